"""Resp's fast paths give exactly what the general forms give: replies encoded from ready-made
pieces (resp_encode.py) against the RESP grammar written out, and requests scanned byte by byte
(resp_scan.py) against the exact parser, whatever the cuts."""

from __future__ import annotations

from typing import Any

import pytest

from greensrv import FilterError
from greensrv.filters import NEED_DATA, Resp, RespError


def general(record: Any, protocol: int = 2) -> bytes:
    """The wire form as the RESP grammar spells it, without any shortcut."""
    if record is None:
        return b"$-1\r\n" if protocol == 2 else b"_\r\n"
    if isinstance(record, bytes):
        return b"$%d\r\n%b\r\n" % (len(record), record)
    if isinstance(record, int):
        return b":%d\r\n" % record
    if isinstance(record, RespError):
        data = record.message.encode("utf-8", "surrogateescape")
        if b"\r" in data or b"\n" in data:
            if protocol == 3:
                return b"!%d\r\n%b\r\n" % (len(data), data)
            data = data.replace(b"\r", b" ").replace(b"\n", b" ")
        return b"-%b\r\n" % data
    data = record.encode("utf-8", "surrogateescape")
    if b"\r" in data or b"\n" in data:
        return b"$%d\r\n%b\r\n" % (len(data), data)
    return b"+%b\r\n" % data


REPLIES: list[Any] = [
    "OK", "PONG", "QUEUED", "", "ok", "caf\u00e9", "bad \udcff surrogate", "two\r\nlines", "a\nb",
    None, RespError("ERR x"), RespError("ERR multi\r\nline"), RespError("caf\u00e9"),
    *(b"x" * n for n in (0, 1, 8, 57, 1023, 1024, 5000)), b"with\r\ncrlf",
    *range(-2, 3), 1023, 1024, 2**63 - 1, -(2**63),
]


@pytest.mark.parametrize("protocol", [2, 3])
def test_the_common_replies_encode_as_the_grammar_says(protocol):
    f = Resp(protocol=protocol)
    for record in REPLIES:
        assert f.encode(record) == general(record, protocol), record
        assert Resp().feed(f.encode(record)) in ([record], [None], [RespError(record)]) or \
            isinstance(record, (str, RespError))


def test_a_reply_of_a_subclass_takes_the_general_path():
    class Name(str):
        pass

    class Blob(bytes):
        pass

    f = Resp()
    assert f.encode(Name("OK")) == b"+OK\r\n"
    assert f.encode(Blob(b"ab")) == b"$2\r\nab\r\n"
    assert f.encode(True) == b":1\r\n"


COMMANDS_WIRE = (b"*3\r\n$3\r\nSET\r\n$13\r\nkey:000000001\r\n$5\r\nvalue\r\n"
                 b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n$4\r\nbare\r\n*1\r\n$4\r\nPING\r\n"
                 b"PING inline\r\n*1\r\n$0\r\n\r\n")


def pull(f: Resp, chunks: list[bytes]) -> list[Any]:
    out: list[Any] = []
    received = b""
    for chunk in chunks:
        f.receive(chunk)
        received += chunk
        while True:
            try:
                record = f.next_record()
            except FilterError as exc:
                return [*out, str(exc)]
            if record is NEED_DATA:
                break
            rest = f.pending()
            assert received.endswith(rest)  # what is left is the unparsed end, exactly
            out.append((record, rest))
    return out


@pytest.mark.parametrize("wire", [
    COMMANDS_WIRE * 8,
    COMMANDS_WIRE * 6 + b"*2\r\n$3\r\nGET\r\n$1\r\nkXY",  # a bad CRLF after many good ones
    COMMANDS_WIRE * 6 + b"*1\r\n$99999999999999999999\r\n",  # a length past the limit
])
def test_scanned_requests_parse_as_the_exact_parser_whatever_the_cuts(wire):
    """The scan (and split) paths run from 256 buffered bytes; one byte at a time never
    reaches them, so it is the exact parser's answer."""
    exact = pull(Resp(), [bytes((b,)) for b in wire])
    assert [r for r, _ in exact[:-1]] != [] or isinstance(exact[-1], str)
    for cut in range(len(wire) + 1):
        got = pull(Resp(), [wire[:cut], wire[cut:]])
        assert [r if isinstance(r, str) else r[0] for r in got] == \
            [r if isinstance(r, str) else r[0] for r in exact], cut
        assert got == pull(Resp(), [wire[:cut], wire[cut:]])  # and pending() is repeatable


@pytest.mark.parametrize("protocol", [2, 3])
def test_encode_many_is_each_reply_encoded_in_order(protocol):
    f = Resp(protocol=protocol)
    assert f.encode_many(REPLIES) == b"".join(f.encode(r) for r in REPLIES)
    assert f.encode_many([]) == b""

    class Loud(Resp):
        def encode(self, record: Any) -> bytes:
            return Resp.encode(self, record.upper() if isinstance(record, str) else record)

    assert Loud().encode_many(["ok", b"x"]) == b"+OK\r\n$1\r\nx\r\n"  # the override is honoured
