"""Property tests: any records in any chunking round-trip; any bytes give records or FilterError.

The second property is the fuzz invariant every server relies on: hostile input may close one
client with a FilterError but never raises anything else into the connection. The runs are
bounded (``max_examples``) so they belong to the normal test suite.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from greensrv import FilterError
from greensrv.filters import (
    NEED_DATA,
    Attributed,
    Block,
    Filter,
    Grep,
    JsonLines,
    LengthPrefixed,
    Line,
    Map,
    Netstring,
    Push,
    Resp,
    RespError,
    Stack,
    Stream,
    Verbatim,
)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text_no_newline = st.text(st.characters(blacklist_characters="\r\n",
                                        blacklist_categories=("Cs",)), max_size=20)
bytes_no = lambda *bad: st.binary(max_size=20).filter(  # noqa: E731
    lambda b: not any(x in b for x in bad))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=10)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=4),
    max_leaves=10)
resp_values = st.recursive(
    st.none() | st.integers(-(2**63), 2**63 - 1) | st.binary(max_size=30)
    | st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
              max_size=10)
    | st.builds(RespError, st.text(st.characters(blacklist_characters="\r\n",
                                                 blacklist_categories=("Cs",)), max_size=10)),
    lambda inner: st.lists(inner, max_size=4), max_leaves=12)

_no_crlf = st.text(st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
                   max_size=10)
_keys = st.binary(max_size=8) | st.integers(-100, 100)
resp3_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.binary(max_size=30) | _no_crlf
    | st.builds(RespError, st.text(st.characters(blacklist_categories=("Cs",)), max_size=10))
    | st.builds(Verbatim, st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)),
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(Push)
    | st.dictionaries(_keys, inner, max_size=3) | st.sets(_keys, max_size=4)
    | st.builds(Attributed, inner, st.dictionaries(_keys, inner, max_size=2)),
    max_leaves=12)

ROUND_TRIP: list[tuple[str, Callable[[], Filter], Any]] = [
    ("Line", Line, text_no_newline),
    ("Line bytes", lambda: Line(encoding=None), bytes_no(b"\n", b"\r")),
    ("Line literal", lambda: Line(literal=b"<>", encoding=None), bytes_no(b"<", b">")),
    ("Line strict", lambda: Line(strict_crlf=True), text_no_newline),
    ("Line regexp", lambda: Line(input_regexp=rb"\r?\n|;", encoding=None, output_literal=";"),
     bytes_no(b"\n", b";", b"\r")),
    ("Block", lambda: Block(3), st.binary(min_size=3, max_size=3)),
    ("LengthPrefixed", lambda: LengthPrefixed("!H"), st.binary(max_size=40)),
    ("Netstring", Netstring, st.binary(max_size=40)),
    ("JsonLines", JsonLines, json_values),
    ("Resp", Resp, resp_values),
    ("Resp3", lambda: Resp(protocol=3), resp3_values),
    ("Stack", lambda: Stack(Stream(), Line(), Map(get=str.upper, put=str.lower)),
     text_no_newline.map(str.upper).filter(lambda s: s.lower().upper() == s)),
]


def split_points(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


@pytest.mark.parametrize("name, make, records", ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
def test_any_records_in_any_chunking_round_trip(name, make, records):
    @FAST
    @given(st.lists(records, max_size=8), st.lists(st.integers(0, 10_000), max_size=12),
           st.booleans())
    def prop(values, cuts, pull):
        f = make()
        wire = f.encode_many(values)
        got: list[Any] = []
        for chunk in split_points(wire, cuts):
            if pull:
                f.receive(chunk)
                while (r := f.next_record()) is not NEED_DATA:
                    got.append(r)
            else:
                got += f.feed(chunk)
        assert got == values
        assert f.pending() == b""
    prop()


def zlib_lines() -> Stack:
    inflate = zlib.decompressobj()
    return Stack(Map(get=lambda b: inflate.decompress(b, 4096)), Line(encoding=None))


FUZZED: list[tuple[str, Callable[[], Filter]]] = [
    ("Line", Line),
    ("Line small", lambda: Line(max_length=16)),
    ("Line bytes", lambda: Line(encoding=None, max_length=16)),
    ("Line literal", lambda: Line(literal="ab", max_length=16)),
    ("Line strict", lambda: Line(strict_crlf=True, max_length=16)),
    ("Line regexp", lambda: Line(input_regexp=rb"[;,]+", max_length=16)),
    ("Stream", Stream),
    ("Block", lambda: Block(4)),
    ("LengthPrefixed", lambda: LengthPrefixed("!h", max_length=64)),
    ("Netstring", lambda: Netstring(max_length=64)),
    ("JsonLines", lambda: JsonLines(max_length=64)),
    ("Resp", Resp),
    ("Resp3", lambda: Resp(protocol=3)),
    ("Resp small", lambda: Resp(max_bulk_length=8, max_array_length=4, max_depth=2,
                                max_line_length=8, max_message_length=64)),
    ("Grep", lambda: Stack(Line(), Grep(get=lambda s: "x" not in s))),
    ("Stack", lambda: Stack(Netstring(max_length=64), Line(encoding=None), JsonLines())),
]

#: Bytes that make parsers take their interesting branches.
alphabet = st.sampled_from(list(b"\r\n$*+-:,;0123456789abx{}[]\"\x00\xff%~#_(=!>|tf"))
hostile = st.one_of(st.binary(max_size=200),
                    st.lists(alphabet, max_size=200).map(bytes))


@pytest.mark.parametrize("name, make", FUZZED, ids=[r[0] for r in FUZZED])
def test_arbitrary_bytes_give_records_or_filter_error_only(name, make):
    @FUZZ
    @given(hostile, st.lists(st.integers(0, 10_000), max_size=10), st.booleans())
    def prop(data, cuts, eof):
        f = make()
        try:
            for chunk in split_points(data, cuts):
                f.feed(chunk)
                try:
                    f.pending()
                except FilterError:
                    pass
            if eof:
                f.feed_eof()
        except FilterError:
            pass
    prop()


@FUZZ
@given(hostile)
def test_resp_bulk_path_agrees_with_exact_parser(data):
    """The split-based path and the one-byte-at-a-time parser see the same messages."""
    def run(chunks: list[bytes]) -> tuple[list[Any], str | None]:
        f = Resp()
        out: list[Any] = []
        try:
            for c in chunks:
                out += f.feed(c)
        except FilterError:
            return out, "error"
        return out, None
    whole = run([data * 3])
    dripped = run([bytes((b,)) for b in data * 3])
    assert whole[0][: len(dripped[0])] == dripped[0][: len(whole[0])]
    if whole[1] is None and dripped[1] is None:
        assert whole == dripped
