"""Line's whole-line path: a chunk ending in a terminator, received while nothing partial is
buffered, is split straight from the received bytes. It must never differ from the buffered
path: the same bytes, cut at every position, give the same records, the same errors, the same
pending() at every step and the same end of input, through both.

The buffered path is forced by handing ``receive`` a ``bytearray`` (the whole-line path takes
only ``bytes``, which cannot change after it keeps them)."""

from __future__ import annotations

from typing import Any

import pytest

from greensrv import FilterError
from greensrv.filters import NEED_DATA, JsonLines, Line

MAKERS = {
    "default": Line,
    "bytes": lambda: Line(encoding=None),
    "literal": lambda: Line(literal="|"),
    "overlapping literal": lambda: Line(literal=b"aa", encoding=None),
    "crlf literal": lambda: Line(literal="\r\n"),
    "strict crlf": lambda: Line(strict_crlf=True),
    "short max": lambda: Line(max_length=3),
    "replace": lambda: Line(errors="replace"),
    "latin-1": lambda: Line(encoding="latin-1"),
    "utf-16": lambda: Line(encoding="utf-16-le", literal="\n".encode("utf-16-le")),
    "jsonlines": JsonLines,
}

WIRES = [
    b"one\r\ntwo\nthree\r\n",
    b"\n\n\r\n",
    b"caf\xc3\xa9\nx\n",
    b"bad \xff byte\nnext\n",
    b"abc\nabcd\nab\r\n",
    b"a|b||c|",
    b"xaaaa|aaaaa\n",
    b"bare\rcr\r\nok\r\n",
    b"bare\nlf\r\n",
    b'{"a": 1}\n[2]\n\r\nnot json\n',
    b"h\x00i\x00\n\x00o\x00k\x00\n\x00",
    b"no terminator at all",
]


def step(f: Line) -> list[Any]:
    """Every record now available, one next_record() at a time, with pending() after each;
    an error ends the list (its message is the last item)."""
    out: list[Any] = []
    while True:
        try:
            record = f.next_record()
        except FilterError as exc:
            return [*out, ("error", str(exc))]
        if record is NEED_DATA:
            return [*out, ("pending", f.pending(), f.pending_size())]
        out.append((record, f.pending()))


def run(make: Any, chunks: list[bytes], whole: bool) -> list[Any]:
    f = make()
    seen: list[Any] = []
    for chunk in chunks:
        f.receive(chunk if whole else bytearray(chunk))
        got = step(f)
        seen.append(got)
        if got[-1][0] == "error":
            return seen
    try:
        seen.append(f.feed_eof())
    except FilterError as exc:
        seen.append(("eof error", str(exc)))
    return seen


@pytest.mark.parametrize("name", MAKERS)
def test_whole_line_chunks_parse_as_buffered_ones_whatever_the_cuts(name):
    make = MAKERS[name]
    for wire in WIRES:
        for cut in range(len(wire) + 1):
            chunks = [wire[:cut], wire[cut:]]
            assert run(make, chunks, True) == run(make, chunks, False), (wire, cut)
        for cut in range(1, len(wire)):  # three pieces, the middle one a single byte
            chunks = [wire[:cut], wire[cut : cut + 1], wire[cut + 1 :]]
            assert run(make, chunks, True) == run(make, chunks, False), (wire, cut)
        twice = [wire, wire]  # a second chunk while the first one's lines are not all taken
        assert run(make, twice, True) == run(make, twice, False), wire


@pytest.mark.parametrize("name", MAKERS)
def test_feed_and_take_pending_agree_with_the_buffered_path(name):
    make = MAKERS[name]
    for wire in WIRES:
        fast, slow = make(), make()
        try:
            want: Any = slow.feed(bytearray(wire))
        except FilterError as exc:
            want = str(exc)
        try:
            got: Any = fast.feed(wire)
        except FilterError as exc:
            got = str(exc)
        assert got == want, wire
        fast, slow = make(), make()
        fast.receive(wire)
        slow.receive(bytearray(wire))
        try:
            first = fast.next_record()
        except FilterError:
            continue
        assert slow.next_record() == first
        assert fast.take_pending() == slow.take_pending(), wire
        assert fast.pending() == b"" and fast.take_ready() == []


def test_a_whole_line_chunk_is_split_in_receive_and_kept_for_pending():
    f = Line()
    f.receive(b"a\r\nb\nc\r\n")
    assert f.pending_size() == 8 and f.pending() == b"a\r\nb\nc\r\n"
    assert f.next_record() == "a"
    assert f.pending() == b"b\nc\r\n"
    assert f.take_ready() == ["c", "b"]  # the batch, last one first, as the Connection pops it


def test_a_chunk_after_a_partial_line_takes_the_buffered_path():
    f = Line()
    f.receive(b"par")
    f.receive(b"tial\nnext\n")
    assert [f.next_record(), f.next_record(), f.next_record()] == ["partial", "next", NEED_DATA]


def test_an_override_of_next_record_that_reads_the_buffer_still_sees_every_byte():
    """A subclass whose next_record does not go through Line's is never handed batches."""

    class FirstByte(Line):
        def next_record(self) -> Any:
            if len(self._buf) == self._start:
                return NEED_DATA
            byte = self._buf[self._start]
            self._start += 1
            return byte

    f = FirstByte()
    f.receive(b"ab\n")
    assert [f.next_record(), f.next_record(), f.next_record()] == [97, 98, 10]
    assert f.next_record() is NEED_DATA


def test_an_error_in_a_whole_line_chunk_is_reported_after_the_good_lines():
    f = Line(max_length=3)
    f.receive(b"ok\ntoo long\nfine\n")
    assert f.next_record() == "ok"
    with pytest.raises(FilterError, match="max_length=3"):
        f.next_record()
    g = Line()
    g.receive(b"ok\n\xff\n")
    assert g.next_record() == "ok"
    with pytest.raises(FilterError, match="undecodable utf-8"):
        g.next_record()
