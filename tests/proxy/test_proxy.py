"""The sans-IO PROXY protocol parser and encoder (greensrv.proxy), without sockets.

Every header is parsed three ways (whole, one byte at a time, with the bytes after it left in
``pending()``); every malformation has its message checked; hypothesis checks that any bytes in
any chunking give a header or ProxyProtocolError, and that encode → parse is the identity.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greensrv
from greensrv import FilterError
from greensrv.filters import NEED_DATA
from greensrv.proxy import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderParser,
    ProxyProtocolError,
    crc32c,
    ipv6_text,
    parse_proxy_header,
)

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRAILER = b"\x16\x03\x01 first bytes of TLS or a record\r\n"


def v2(command=1, family=1, transport=1, body=b"", version=2, length=None):
    """A raw v2 header (no checksum fixing): for malformed cases the encoder would refuse."""
    length = len(body) if length is None else length
    return (V2_SIGNATURE + bytes([version << 4 | command, family << 4 | transport])
            + struct.pack("!H", length) + body)


def tlv(kind, value):
    return struct.pack("!BH", kind, len(value)) + value


INET_BLOCK = bytes([10, 0, 0, 1, 192, 168, 1, 2]) + struct.pack("!HH", 40000, 443)
SSL_VALUE = (struct.pack("!BI", 0x01 | 0x02, 0) + tlv(0x21, b"TLSv1.3")
             + tlv(0x22, b"client.example") + tlv(0x23, b"TLS_AES_128_GCM_SHA256"))

VALID = [
    ("v1 TCP4", b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n",
     dict(version=1, command="PROXY", source=("192.0.2.1", 56324),
          destination=("198.51.100.7", 443), family="INET")),
    ("v1 TCP6, canonicalised", b"PROXY TCP6 2001:DB8:0:0::1 ::1 0 65535\r\n",
     dict(version=1, source=("2001:db8::1", 0), destination=("::1", 65535), family="INET6")),
    ("v1 UNKNOWN short", b"PROXY UNKNOWN\r\n", dict(version=1, source=None, family="UNSPEC")),
    ("v1 UNKNOWN with ignored fields", b"PROXY UNKNOWN whatever at all\r\n",
     dict(version=1, source=None)),
    ("v1 longest line", b"PROXY UNKNOWN " + b"f" * 91 + b"\r\n", dict(version=1, source=None)),
    ("v2 INET", v2(body=INET_BLOCK),
     dict(version=2, command="PROXY", source=("10.0.0.1", 40000),
          destination=("192.168.1.2", 443), family="INET", transport="STREAM")),
    ("v2 INET6 DGRAM", v2(family=2, transport=2, body=ipaddress.IPv6Address("2001:db8::5").packed
                          + ipaddress.IPv6Address("::1").packed + struct.pack("!HH", 1, 2)),
     dict(source=("2001:db8::5", 1), destination=("::1", 2), family="INET6",
          transport="DGRAM")),
    ("v2 UNIX", v2(family=3, body=b"/run/a.sock".ljust(108, b"\0") + b"/b".ljust(108, b"\0")),
     dict(source="/run/a.sock", destination="/b", family="UNIX")),
    ("v2 LOCAL (health check)", v2(command=0, family=0, transport=0),
     dict(command="LOCAL", source=None, destination=None)),
    ("v2 LOCAL with an address block to skip", v2(command=0, body=INET_BLOCK),
     dict(command="LOCAL", source=None)),
    ("v2 PROXY over an UNSPEC transport ignores addresses", v2(transport=0, body=INET_BLOCK),
     dict(command="PROXY", source=None, family="UNSPEC", transport="UNSPEC")),
    ("v2 PROXY UNSPEC", v2(family=0, transport=0, body=tlv(0xE1, b"x")),
     dict(command="PROXY", source=None, family="UNSPEC", tlvs={0xE1: b"x"})),
    ("v2 TLVs", v2(body=INET_BLOCK + tlv(PP2_TYPE_ALPN, b"h2") + tlv(PP2_TYPE_NOOP, b"\0" * 3)
                   + tlv(PP2_TYPE_AUTHORITY, "bücher.example".encode())
                   + tlv(PP2_TYPE_UNIQUE_ID, b"u" * 128) + tlv(0x30, b"blue")
                   + tlv(0xEA, b"\x01vpce-123") + tlv(0xF3, b"")),
     dict(alpn=b"h2", authority="bücher.example", unique_id=b"u" * 128, netns="blue",
          tlvs={PP2_TYPE_ALPN: b"h2", PP2_TYPE_AUTHORITY: "bücher.example".encode(),
                PP2_TYPE_UNIQUE_ID: b"u" * 128, 0x30: b"blue", 0xEA: b"\x01vpce-123",
                0xF3: b""})),
    ("v2 SSL TLV", v2(body=INET_BLOCK + tlv(PP2_TYPE_SSL, SSL_VALUE)),
     dict(source=("10.0.0.1", 40000))),
    ("v2 CRC32C", ProxyHeader(2, source=("10.0.0.1", 1), destination=("10.0.0.2", 2),
                              tlvs={PP2_TYPE_CRC32C: b"", PP2_TYPE_UNIQUE_ID: b"id"}).encode(),
     dict(unique_id=b"id")),
]


def check(header, expected):
    for name, value in expected.items():
        actual = getattr(header, name)
        assert (dict(actual) if name == "tlvs" else actual) == value, name


def parse_bytewise(data):
    parser = ProxyHeaderParser()
    for i in range(len(data)):
        header = parser.feed(data[i:i + 1])
        if header is not None:
            return header, parser, i + 1
    return None, parser, len(data)


@pytest.mark.parametrize("name, wire, expected", VALID, ids=[v[0] for v in VALID])
def test_valid_header_whole_bytewise_and_with_trailing_bytes(name, wire, expected):
    header, rest = parse_proxy_header(wire)
    check(header, expected)
    assert rest == b""

    header2, parser, used = parse_bytewise(wire + TRAILER)
    assert header2 == header
    assert used == len(wire), "the header is complete exactly at its last byte"
    assert parser.header_length == len(wire)

    header3, rest = parse_proxy_header(wire + TRAILER)
    assert header3 == header and rest == TRAILER


def test_ssl_tlv_properties():
    header, _ = parse_proxy_header(v2(body=INET_BLOCK + tlv(PP2_TYPE_SSL, SSL_VALUE)))
    ssl = header.ssl
    assert ssl.ssl and ssl.client_cert and ssl.verified
    assert (ssl.version, ssl.cn, ssl.cipher) == ("TLSv1.3", "client.example",
                                                 "TLS_AES_128_GCM_SHA256")
    unverified = struct.pack("!BI", 0x01 | 0x04, 20) + tlv(0x21, b"TLSv1.2")
    header, _ = parse_proxy_header(v2(body=INET_BLOCK + tlv(PP2_TYPE_SSL, unverified)))
    assert header.ssl.client_cert and not header.ssl.verified and header.ssl.cn is None
    no_cert = struct.pack("!BI", 0x01, 0)
    header, _ = parse_proxy_header(v2(body=INET_BLOCK + tlv(PP2_TYPE_SSL, no_cert)))
    assert not header.ssl.client_cert and not header.ssl.verified
    assert parse_proxy_header(v2(body=INET_BLOCK))[0].ssl is None


def test_crc32c_check_value_and_verification():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    good = VALID[-1][1]
    crc_at = good.index(bytes([PP2_TYPE_CRC32C, 0, 4])) + 3
    header, _ = parse_proxy_header(good)
    assert header.tlvs[PP2_TYPE_CRC32C] == good[crc_at:crc_at + 4]
    flipped = bytearray(good)
    flipped[-1] ^= 1  # a bit of the unique id
    with pytest.raises(ProxyProtocolError, match="CRC32C mismatch"):
        parse_proxy_header(bytes(flipped))


BAD_V1 = [
    (b"GET / HTTP/1.1\r\n", "not a PROXY protocol header: it starts with b'G"),
    (b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2\r\n", "protocol b'TCP5' is not TCP4, TCP6 or UNKNOWN"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", "lone LF"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2\r3\r\n", "CR that is not followed by LF"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1\r\n", "needs 4 fields after the protocol"),
    (b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2\r\n", "separated by single spaces"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 2 \r\n", "needs 4 fields"),
    (b"PROXY TCP4 1.2.3.04 1.2.3.4 1 2\r\n", "source address b'1.2.3.04' has a leading zero"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.256 1 2\r\n", "destination address b'1.2.3.256' has a part above"),
    (b"PROXY TCP4 1.2.3 1.2.3.4 1 2\r\n", "source address b'1.2.3' is not a dotted IPv4"),
    (b"PROXY TCP4 ::1 1.2.3.4 1 2\r\n", "source address b'::1' is not a dotted IPv4"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "source address b'1.2.3.4' is not an IPv6 address"),
    (b"PROXY TCP6 ::1 ::1%eth0 1 2\r\n", "destination address b'::1%eth0' is not an IPv6"),
    (b"PROXY TCP6 ::1 1:2:3:4:5:6:7:8:9 1 2\r\n", "is not an IPv6 address"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 080 2\r\n", "source port b'080' has a leading zero"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 1 65536\r\n", "destination port 65536 is above 65535"),
    (b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2\r\n", "source port b'-1' is not a decimal number"),
    (b"PROXY UNKNOWN " + b"f" * 92 + b"\r\n", "no CRLF within its limit of 107 bytes"),
    (b"PROXY  TCP4", "protocol b'' is not TCP4"),
    (b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "not a PROXY protocol header"),
]
BAD_V2 = [
    (v2(version=1), "version 1; only version 2 exists"),
    (v2(command=2), "command 2 is neither LOCAL (0) nor PROXY (1)"),
    (v2(family=4), "address family 4 is not one of"),
    (v2(transport=3), "transport 3 is not one of"),
    (v2(body=INET_BLOCK[:11]), "INET address block needs 12 bytes but the length field says 11"),
    (v2(family=2, body=INET_BLOCK), "INET6 address block needs 36"),
    (v2(family=3, body=b"x" * 215), "UNIX address block needs 216"),
    (v2(length=4097), "4097 bytes after its first 16 exceeds max_v2_length=4096"),
    (v2(body=INET_BLOCK + b"\x01\x00"), "TLV truncated: 2 byte(s) left"),
    (v2(body=INET_BLOCK + b"\x01\x00\x05ab"), "TLV 0x01 claims 5 bytes but only 2 remain"),
    (v2(body=INET_BLOCK + tlv(1, b"a") + tlv(1, b"b")), "TLV 0x01 appears twice"),
    (v2(body=INET_BLOCK + tlv(PP2_TYPE_CRC32C, b"abc")), "CRC32C TLV has 3 bytes instead of 4"),
    (v2(body=INET_BLOCK + tlv(PP2_TYPE_UNIQUE_ID, b"u" * 129)),
     "UNIQUE_ID TLV has 129 bytes, more than the 128 allowed"),
    (v2(body=INET_BLOCK + tlv(PP2_TYPE_AUTHORITY, b"\xff")), "TLV 0x02 is not utf-8 text"),
    (v2(body=INET_BLOCK + tlv(PP2_TYPE_SSL, b"\x01\0\0")), "SSL TLV has 3 bytes; its client"),
    (v2(body=INET_BLOCK + tlv(PP2_TYPE_SSL, b"\x01\0\0\0\0\x21\x00\x09TLS")),
     "SSL sub-TLV 0x21 claims 9 bytes"),
    (v2(body=INET_BLOCK + tlv(PP2_TYPE_SSL, b"\x01\0\0\0\0" + tlv(0x22, b"\xc3"))),
     "SSL sub-TLV 0x22 is not utf-8 text"),
    (b"\r\n\r\n\x00\r\nQUIZ\n", "not a PROXY protocol header"),
]


@pytest.mark.parametrize("wire, message", BAD_V1 + BAD_V2,
                         ids=[m for _, m in BAD_V1 + BAD_V2])
def test_malformed_header_message_whole_and_bytewise(wire, message):
    with pytest.raises(ProxyProtocolError, match=_re(message)):
        parse_proxy_header(wire + TRAILER)
    with pytest.raises(ProxyProtocolError, match=_re(message)):
        parse_bytewise(wire + TRAILER)


def _re(text):
    return re.escape(text)


def test_errors_are_filter_errors_and_exported():
    assert issubclass(ProxyProtocolError, FilterError)
    assert issubclass(ProxyProtocolError, ValueError)
    assert greensrv.ProxyProtocolError is ProxyProtocolError
    assert greensrv.ProxyHeader is ProxyHeader


@pytest.mark.parametrize("wire, after", [
    (b"GET", 1), (b"PROXX", 5), (v2(version=3, length=60000), 16),
    (v2(body=b"x" * 1000, length=11), 16),
])
def test_malformed_is_known_as_soon_as_possible(wire, after):
    """Rejected at the byte that makes it invalid, not after waiting for more."""
    parser = ProxyHeaderParser()
    for i in range(after - 1):
        assert parser.feed(wire[i:i + 1]) is None
    with pytest.raises(ProxyProtocolError):
        parser.feed(wire[after - 1:after])


def test_v2_length_is_honoured_and_wanted_is_exact():
    wire = v2(body=INET_BLOCK + tlv(0xE0, b"z" * 300))
    parser = ProxyHeaderParser()
    assert parser.wanted() == 107
    assert parser.feed(wire[:16]) is None
    assert parser.wanted() == len(wire) - 16
    assert parser.feed(wire[16:-1]) is None and parser.wanted() == 1
    assert parser.feed(wire[-1:] + b"after").tlvs[0xE0] == b"z" * 300
    assert parser.pending() == b"after" and parser.wanted() == 0


def test_versions_accepted():
    v1 = b"PROXY UNKNOWN\r\n"
    with pytest.raises(ProxyProtocolError, match="a PROXY v1 header, but only v2 is accepted"):
        ProxyHeaderParser({2}).feed(v1)
    with pytest.raises(ProxyProtocolError, match="a PROXY v2 header, but only v1 is accepted"):
        ProxyHeaderParser({1}).feed(v2(command=0, family=0, transport=0))
    assert ProxyHeaderParser({1}).feed(v1).version == 1
    with pytest.raises(ValueError, match="versions must be 1, 2 or both"):
        ProxyHeaderParser({3})


def test_incomplete_header_at_eof():
    parser = ProxyHeaderParser()
    assert parser.feed(b"PROXY TCP4 1.2") is None
    assert parser.next_header() is NEED_DATA
    with pytest.raises(ProxyProtocolError, match="closed after 14 bytes, before the PROXY"):
        parser.feed_eof()


def test_v1_line_is_not_rescanned():
    """A dripping v1 client: each byte is searched for the line end once."""
    parser = ProxyHeaderParser()
    line = b"PROXY TCP6 2001:db8::1 2001:db8::2 1000 2000\r"
    for i in range(len(line)):
        parser.feed(line[i:i + 1])
        if i >= len(b"PROXY "):
            assert parser._scanned >= i  # only a held CR is looked at twice
    assert parser.feed(b"\n").source == ("2001:db8::1", 1000)


def test_header_is_immutable_and_hashable():
    header, _ = parse_proxy_header(VALID[-1][1])
    with pytest.raises(dataclasses.FrozenInstanceError):
        header.source = ("1.1.1.1", 1)  # type: ignore[misc]
    with pytest.raises(TypeError):
        header.tlvs[1] = b"x"  # type: ignore[index]
    assert hash(header) == hash(parse_proxy_header(VALID[-1][1])[0])


def test_encode_refuses_what_a_version_cannot_carry():
    with pytest.raises(ValueError, match="v1 header cannot carry TLVs"):
        ProxyHeader(2, source=("1.1.1.1", 1), destination=("2.2.2.2", 2),
                    tlvs={1: b"h2"}).encode(1)
    with pytest.raises(ValueError, match="carries TCP only, not UNIX"):
        ProxyHeader(2, source="/a", destination="/b").encode(1)
    with pytest.raises(ValueError, match="version must be 1 or 2"):
        ProxyHeader(1).encode(3)
    with pytest.raises(ValueError, match="command must be 'PROXY' or 'LOCAL'"):
        ProxyHeader(1, command="HELLO")
    assert ProxyHeader(2, command="LOCAL").encode(1) == b"PROXY UNKNOWN\r\n"
    with pytest.raises(ValueError, match="source must be"):
        ProxyHeader(1, source=("1.1.1.1",), destination=("2.2.2.2", 2))


def test_socket_style_ipv6_addresses_are_accepted():
    header = ProxyHeader(2, source=("::1", 5, 0, 0), destination=("::2", 6, 0, 0))
    assert header.source == ("::1", 5) and header.encode(1) == b"PROXY TCP6 ::1 ::2 5 6\r\n"


# -- properties --------------------------------------------------------------------------------
ipv4 = st.builds(lambda n: str(ipaddress.IPv4Address(n)), st.integers(0, 2**32 - 1))
ipv6 = st.builds(lambda n: str(ipaddress.IPv6Address(n)), st.integers(0, 2**128 - 1))
port = st.integers(0, 65535)
tcp_pair = st.one_of(
    st.tuples(st.tuples(ipv4, port), st.tuples(ipv4, port)),
    st.tuples(st.tuples(ipv6, port), st.tuples(ipv6, port)),
)
unix_path = st.text(st.characters(min_codepoint=1, max_codepoint=0x7F), min_size=1,
                    max_size=100)
tlv_values = st.dictionaries(
    st.sampled_from([PP2_TYPE_ALPN, PP2_TYPE_CRC32C, PP2_TYPE_UNIQUE_ID, 0x30, 0xE0, 0xEF,
                     0xF0, 0xFF]),
    st.binary(max_size=40).map(lambda b: b.hex()[:64].encode()), max_size=5)
v2_headers = st.one_of(
    st.builds(lambda pair, tlvs, transport: ProxyHeader(2, "PROXY", pair[0], pair[1], tlvs,
                                                        transport=transport),
              tcp_pair, tlv_values, st.sampled_from(["STREAM", "DGRAM"])),
    st.builds(lambda s, d, tlvs: ProxyHeader(2, "PROXY", s, d, tlvs), unix_path, unix_path,
              tlv_values),
    st.builds(lambda tlvs, command: ProxyHeader(2, command, tlvs=tlvs), tlv_values,
              st.sampled_from(["PROXY", "LOCAL"])),
)


def split(wire, cuts):
    """``wire`` in the chunks that the sorted offsets ``cuts`` make (some may be empty)."""
    return [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]


@FUZZ
@given(v2_headers, st.data())
def test_v2_round_trip_any_chunking(header, data):
    wire = header.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    parser = ProxyHeaderParser()
    got = None
    for chunk in split(wire, cuts):
        got = parser.feed(chunk) or got
    assert got is not None
    expected = {k: v for k, v in header.tlvs.items() if k != PP2_TYPE_CRC32C}
    assert {k: v for k, v in got.tlvs.items() if k != PP2_TYPE_CRC32C} == expected
    assert (got.command, got.source, got.destination) == (header.command, header.source,
                                                          header.destination)
    assert got.encode() == wire


@FUZZ
@given(st.lists(st.sampled_from([0, 0, 0, 1, 0xFFFF]) | st.integers(0, 0xFFFF), min_size=8,
                max_size=8))
def test_ipv6_text_is_what_ipaddress_writes(groups):
    packed = struct.pack("!8H", *groups)
    assert ipv6_text(packed) == str(ipaddress.IPv6Address(packed))
    mapped = bytes(10) + b"\xff\xff" + packed[:4]
    assert ipv6_text(mapped) == str(ipaddress.IPv6Address(mapped))


@FUZZ
@given(tcp_pair)
def test_v1_round_trip(pair):
    header = ProxyHeader(1, "PROXY", pair[0], pair[1])
    assert parse_proxy_header(header.encode() + b"x") == (header, b"x")
    assert parse_proxy_header(header.encode(2))[0] == dataclasses.replace(header, version=2)


starts = st.sampled_from([b"", b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", b"PROXY UNKNOWN",
                          V2_SIGNATURE, V2_SIGNATURE + b"\x21\x11", V2_SIGNATURE + b"\x20\x00"])


@FUZZ
@given(starts, st.binary(max_size=300), st.data())
def test_any_bytes_in_any_chunking_give_a_header_or_proxy_protocol_error(start, tail, data):
    wire = start + tail
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    parser = ProxyHeaderParser()
    try:
        for chunk in split(wire, cuts):
            header = parser.feed(chunk)
            if header is not None:
                assert isinstance(header, ProxyHeader)
                assert wire.endswith(parser.pending())
                assert parser.header_length + len(parser.pending()) == len(wire)
                return
        parser.feed_eof()
    except ProxyProtocolError:
        pass
    else:
        pytest.fail("feed_eof() on an incomplete header must raise")


@FUZZ
@given(v2_headers, st.integers(0, 400), st.integers(0, 255))
def test_any_corrupted_v2_header_gives_a_header_or_proxy_protocol_error(header, at, value):
    wire = bytearray(header.encode())
    wire[at % len(wire)] = value
    try:
        parse_proxy_header(bytes(wire))
    except ProxyProtocolError:
        pass
