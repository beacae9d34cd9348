"""The PROXY header's fast path: a whole header in the first bytes, parsed in one step.

``parse_whole_header`` (and ``ProxyHeaderParser.feed`` on a fresh parser, which uses it) must give
exactly what the incremental parser gives: the same header, the same length, the same error
message, for any bytes; and ``read_proxy_header`` must take exactly the header's bytes off a
real socket whichever path it takes, leaving the socket's timeout as it was.
"""

from __future__ import annotations

import ipaddress
import os
import socket

import gevent.socket
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_proxy import FUZZ, TRAILER, VALID, split, starts, v2_headers

from greensrv.filters import NEED_DATA
from greensrv.proxy import (
    PP2_TYPE_CRC32C,
    PP2_TYPE_UNIQUE_ID,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
    crc32c,
    pack_ipv6,  # the v1 TCP6 fast path's address check
    parse_whole_header,
)
from greensrv.proxy_io import proxy_settings, read_proxy_header

BOTH = frozenset({1, 2})
CLIENT, SERVICE = ("203.0.113.7", 51234), ("198.51.100.1", 443)
SIX = ("2001:db8::7", 51234), ("2001:db8::1", 443)
#: What HAProxy sends (send-proxy, send-proxy-v2, proxy-v2-options crc32c,unique-id): all of
#: these must take the fast path.
USUAL = [
    ProxyHeader(1, "PROXY", CLIENT, SERVICE).encode(),
    ProxyHeader(1, "PROXY", *SIX).encode(),
    ProxyHeader(2, "PROXY", CLIENT, SERVICE).encode(),
    ProxyHeader(2, "PROXY", *SIX).encode(),
    ProxyHeader(2, "PROXY", CLIENT, SERVICE,
                {PP2_TYPE_CRC32C: b"", PP2_TYPE_UNIQUE_ID: b"CB00710B:C802"}).encode(),
]
CASES = [wire for _, wire, _ in VALID] + USUAL


def outcome(action):
    """What ``action()`` gives, or the error it raises, as a comparable value."""
    try:
        return action()
    except ProxyProtocolError as exc:
        return ("error", str(exc))


def incremental(wire: bytes, versions=BOTH):
    """The incremental parser's header and length for ``wire``, ``None`` while incomplete
    (``receive`` and ``next_header`` never take the fast path)."""
    parser = ProxyHeaderParser(versions)
    parser.receive(wire)
    header = parser.next_header()
    return None if header is NEED_DATA else (header, parser.header_length)


def fast(wire: bytes, versions=BOTH):
    return parse_whole_header(wire, frozenset(versions))


# -- the parser ---------------------------------------------------------------------------------
@pytest.mark.parametrize("wire", USUAL, ids=["v1 TCP4", "v1 TCP6", "v2 INET", "v2 INET6",
                                             "v2 crc32c,unique-id"])
def test_the_usual_headers_take_the_fast_path(wire):
    found = fast(wire + TRAILER)
    assert found is not None, "HAProxy's headers must not need the incremental parser"
    assert found == incremental(wire + TRAILER)
    assert found[1] == len(wire)


@pytest.mark.parametrize("wire", CASES)
def test_split_at_every_byte_gives_the_same_header(wire):
    whole = ProxyHeaderParser()
    header = whole.feed(wire + TRAILER)
    assert header is not None and whole.pending() == TRAILER
    for at in range(len(wire) + 1):
        parser = ProxyHeaderParser()
        first = parser.feed(wire[:at])
        assert first is None or at == len(wire)
        second = parser.feed(wire[at:] + TRAILER) or first
        assert second == header, f"split at {at}"
        assert parser.header_length == len(wire) and parser.pending() == TRAILER
        assert fast(wire[:at]) is None or at == len(wire), "a partial header is never whole"


def test_unusual_headers_are_left_to_the_incremental_parser():
    local = ProxyHeader(2, "LOCAL").encode()
    unix = ProxyHeader(2, "PROXY", "/a", "/b").encode()
    dgram = ProxyHeader(2, "PROXY", CLIENT, SERVICE, transport="DGRAM").encode()
    for wire in (local, unix, dgram, b"PROXY UNKNOWN\r\n"[:-1]):
        assert fast(wire) is None
    assert fast(USUAL[2], versions={1}) is None and fast(USUAL[0], versions={2}) is None
    with pytest.raises(ProxyProtocolError, match="only v1 is accepted"):
        ProxyHeaderParser({1}).feed(USUAL[2])


def test_errors_in_a_whole_header_are_the_incremental_parsers():
    bad_crc = bytearray(USUAL[4])
    bad_crc[-1] ^= 1
    bad_port = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n"
    lone_cr = b"PROXY TCP4 1.2.3.4 5.6.7.8\r 1 2\r\n"
    for wire, message in ((bytes(bad_crc), "CRC32C mismatch"), (bad_port, "above 65535"),
                          (lone_cr, "CR that is not followed by LF")):
        got = outcome(lambda w=wire: fast(w))
        assert got is None or got == outcome(lambda w=wire: incremental(w))
        assert message in outcome(lambda w=wire: ProxyHeaderParser().feed(w))[1]


@FUZZ
@given(starts, st.binary(max_size=300), st.data())
def test_fast_and_incremental_agree_on_any_bytes(start, tail, data):
    wire = start + tail
    versions = data.draw(st.sampled_from([{1}, {2}, {1, 2}]))
    got = outcome(lambda: fast(wire, versions))
    if got is not None:  # whole and usual: the same header and length, or the same error
        assert got == outcome(lambda: incremental(wire, versions))
    parser = ProxyHeaderParser(versions)
    whole = outcome(lambda: (parser.feed(wire), parser.header_length))
    assert whole == outcome(lambda: incremental(wire, versions) or (None, None))


@FUZZ
@given(v2_headers, st.integers(0, 400), st.integers(0, 255), st.data())
def test_fast_and_incremental_agree_on_corrupted_v2_headers(header, at, value, data):
    wire = bytearray(header.encode() + TRAILER)
    wire[at % len(wire)] = value
    wire = bytes(wire)
    expected = outcome(lambda: incremental(wire))
    got = outcome(lambda: fast(wire))
    assert got is None or got == expected
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=4)))
    parser = ProxyHeaderParser()

    def chunked():
        for chunk in split(wire, cuts):
            if parser.feed(chunk) is not None:
                return parser.next_header(), parser.header_length
        return None

    chunked_outcome = outcome(chunked)
    if expected is not None and expected[0] == "error":  # "it starts with" shows what came
        assert chunked_outcome[0] == "error"
    else:
        assert chunked_outcome == expected


# -- CRC32C -------------------------------------------------------------------------------------
def crc32c_bitwise(data: bytes) -> int:
    """The definition, one bit at a time: the reference the table-driven CRC is checked against."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def test_crc32c_check_value_and_every_tail_length():
    assert crc32c(b"123456789") == crc32c_bitwise(b"123456789") == 0xE3069283
    data = os.urandom(70)
    for n in range(len(data) + 1):  # every number of whole words and leftover bytes
        assert crc32c(data[:n]) == crc32c_bitwise(data[:n]), n
    assert crc32c(bytearray(data)) == crc32c(memoryview(data)) == crc32c(data)


@FUZZ
@given(st.binary(max_size=200))
def test_crc32c_is_the_bitwise_definition(data):
    assert crc32c(data) == crc32c_bitwise(data)


# -- reading off a socket -----------------------------------------------------------------------
@pytest.fixture
def pair():
    a, b = gevent.socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.mark.parametrize("wire", USUAL)
@pytest.mark.parametrize("timeout", [None, 30.0])
def test_an_arrived_header_is_read_exactly_and_the_timeout_kept(pair, wire, timeout):
    server, client = pair
    server.settimeout(timeout)
    client.sendall(wire + TRAILER)
    header = read_proxy_header(server, proxy_settings("any", "127.0.0.1", 5.0))
    assert header == fast(wire)[0]
    assert server.gettimeout() == timeout
    assert server.recv(len(TRAILER) + 10) == TRAILER, "bytes after the header stay unread"


def test_a_header_in_two_parts_takes_the_general_loop(pair):
    server, client = pair
    wire = USUAL[4]
    client.sendall(wire[:20])
    reader = gevent.spawn(read_proxy_header, server, proxy_settings("v2", "127.0.0.1", 5.0))
    gevent.idle()
    assert not reader.ready()
    client.sendall(wire[20:] + TRAILER)
    assert reader.get(timeout=5) == fast(wire)[0]
    assert server.recv(100) == TRAILER


def test_a_plain_blocking_socket_works_too():
    server, client = socket.socketpair()
    with server, client:
        client.sendall(USUAL[2] + TRAILER)
        server.settimeout(5.0)
        assert read_proxy_header(server, proxy_settings("v2", "127.0.0.1", 5.0)) == fast(
            USUAL[2])[0]
        assert server.recv(100) == TRAILER


# -- v1 TCP6 addresses without ipaddress --------------------------------------------------------
def ipaddress_packed(text: bytes) -> bytes | None:
    try:
        return ipaddress.IPv6Address(text.decode("ascii")).packed
    except ValueError:
        return None


@FUZZ
@given(st.text("0123456789abcdefABCDEF:", max_size=41))
def test_pack_ipv6_accepts_nothing_ipaddress_refuses(text):
    got = pack_ipv6(text.encode())
    assert got is None or got == ipaddress_packed(text.encode())


@FUZZ
@given(st.integers(0, 2**128 - 1), st.sampled_from(["compressed", "exploded", "upper"]),
       st.integers(0, 65535))
def test_v1_tcp6_spellings_take_the_fast_path_and_match_ipaddress(number, spelling, port):
    address = ipaddress.IPv6Address(number)
    text = address.exploded if spelling == "exploded" else address.compressed
    text = text.upper() if spelling == "upper" else text
    if address.ipv4_mapped is None:  # the dotted tail of a mapped address is not hex
        assert pack_ipv6(text.encode()) == address.packed
    wire = f"PROXY TCP6 {text} ::1 {port} 443\r\n".encode()
    found = outcome(lambda: fast(wire))
    assert found == outcome(lambda: incremental(wire))
    assert found[0].source == (str(address), port)
