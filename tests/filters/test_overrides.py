"""The public methods of Filter and Line stay overridable from Python, compiled or not.

The compiled base classes (greensrv/filters/base.pxd, _c_line.pxd) make these methods cpdef,
so a Python override is what the base class's own callers reach: ``feed`` calls ``receive`` and
``next_record``, ``feed_eof`` calls ``feed`` and ``pending_size``, ``encode_many`` and
``encode_list`` call ``encode``, and the Connection asks ``ascii_terminator``. Each test here
runs against whichever build is active (tox runs the suite both ways).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from greensrv import FilterError
from greensrv.filters import NEED_DATA, Filter, Line, Resp
from greensrv.filters.base import COMPACT_THRESHOLD


class CallLog:
    """The overrides both test filters share: each logs its call in ``calls``, then delegates."""

    calls: list[str]

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls = []

    def receive(self, data: bytes) -> None:
        self.calls.append("receive")
        super().receive(data)

    def pending(self) -> bytes:
        self.calls.append("pending")
        return super().pending()

    def pending_size(self) -> int:
        self.calls.append("pending_size")
        return super().pending_size()

    def encode_many(self, records: Any) -> bytes:
        self.calls.append("encode_many")
        return super().encode_many(records)


class Comma(CallLog, Filter):
    """A minimal byte filter: records end at ``,``; overrides every public method and logs it."""

    def receive_record(self, record: Any) -> None:
        self.calls.append("receive_record")
        super().receive_record(record)

    def next_record(self) -> Any:
        self.calls.append("next_record")
        i = self._buf.find(b",", self._start)
        if i < 0:
            return NEED_DATA
        record = bytes(self._buf[self._start : i])
        self._start = i + 1
        return record

    def feed(self, data: bytes) -> list[Any]:
        self.calls.append("feed")
        return super().feed(data)

    def feed_eof(self) -> list[Any]:
        self.calls.append("feed_eof")
        return super().feed_eof()

    def encode(self, record: Any) -> bytes:
        self.calls.append("encode")
        return bytes(record) + b","

    def encode_list(self, records: Any) -> list[Any]:
        self.calls.append("encode_list")
        return super().encode_list(records)

    def ascii_terminator(self) -> str | None:
        self.calls.append("ascii_terminator")
        return ","

    def clone(self) -> Comma:
        self.calls.append("clone")
        return Comma()


def test_a_python_filter_overrides_reach_the_base_class_callers():
    f = Comma()
    assert f.feed(b"a,b,c") == [b"a", b"b"]
    assert f.calls[:3] == ["feed", "receive", "next_record"]
    f.calls.clear()
    with pytest.raises(FilterError, match="1 bytes of an incomplete record"):
        f.feed_eof()
    assert f.calls[:3] == ["feed_eof", "feed", "receive"] and "pending_size" in f.calls
    f.calls.clear()
    assert f.encode_many([b"x", b"y"]) == b"x,y,"
    assert f.calls == ["encode_many", "encode", "encode"]
    f.calls.clear()
    assert f.encode_list([b"x"]) == [b"x,"] and f.calls == ["encode_list", "encode"]
    assert f.ascii_terminator() == "," and f.pending() == b"c"
    g = f.clone()
    g.receive_record(b"q,")
    assert g.next_record() == b"q" and g.calls[:2] == ["receive_record", "receive"]


class Shouting(CallLog, Line):
    """A Line subclass overriding every public method Line has."""

    def next_record(self) -> Any:
        self.calls.append("next_record")
        record = super().next_record()
        return record if record is NEED_DATA else record.upper()

    def feed(self, data: bytes) -> list[Any]:
        self.calls.append("feed")
        return [r.upper() for r in super().feed(data)]

    def feed_eof(self) -> list[Any]:
        self.calls.append("feed_eof")
        return [r.upper() for r in super().feed_eof()]

    def encode(self, record: Any) -> bytes:
        self.calls.append("encode")
        return super().encode(record.upper())

    def ascii_terminator(self) -> str | None:
        self.calls.append("ascii_terminator")
        return super().ascii_terminator()

    def clone(self) -> Shouting:
        self.calls.append("clone")
        return Shouting(**self._settings)


def test_a_python_line_subclass_overrides_every_public_method():
    f = Shouting()
    assert f.feed(b"one\r\ntwo\r\nthr") == ["ONE", "TWO"]
    assert f.calls[:2] == ["feed", "receive"]
    assert f.pending() == b"thr" and f.pending_size() == 3
    f.receive(b"ee\nfour\n")
    assert [f.next_record(), f.next_record(), f.next_record()] == ["THREE", "FOUR", NEED_DATA]
    f.receive(b"last")
    assert f.feed_eof() == ["LAST"]
    f.calls.clear()
    # Line's own encode_many and ascii_terminator must see that encode is overridden.
    assert f.encode_many(["a", "b"]) == b"A\r\nB\r\n"
    assert f.calls == ["encode_many", "encode", "encode"]
    assert f.ascii_terminator() is None
    g = f.clone()
    assert isinstance(g, Shouting) and g.feed(b"x\n") == ["X"]


def test_a_subclass_without_overrides_keeps_the_fast_paths():
    class Plain(Line):
        pass

    f = Plain(literal="|")
    assert f.feed(b"a|b|") == ["a", "b"]
    assert f.ascii_terminator() == "|" and f.encode_many(["x", "y"]) == b"x|y|"
    assert type(f.clone()) is Plain


@pytest.mark.parametrize("make, option", [
    (lambda v: Line(max_length=v), "max_length"),
    (lambda v: Resp(max_bulk_length=v), "max_bulk_length"),
    (lambda v: Resp(max_message_length=v), "max_message_length"),
])
def test_a_limit_beyond_a_c_integer_is_refused_at_construction(make, option):
    """Never an OverflowError later, when a compiled filter stores it in a C field."""
    with pytest.raises(ValueError, match=option):
        make(sys.maxsize + 1)
    with pytest.raises(ValueError, match=option):
        make(10**40)
    make(sys.maxsize)  # the largest accepted value works


def test_the_largest_limit_parses_as_no_limit():
    f = Line(max_length=sys.maxsize)
    assert f.feed(b"x" * 100 + b"\n") == ["x" * 100]
    r = Resp(max_bulk_length=sys.maxsize, max_message_length=sys.maxsize)
    assert r.feed(b"$3\r\nabc\r\n") == [b"abc"]


@pytest.mark.parametrize("make, wire, record", [
    (Line, b"%06d\r\n", lambda i: f"{i:06d}"),
    (Resp, b"$6\r\n%06d\r\n", lambda i: b"%06d" % i),
])
def test_records_survive_the_buffer_compaction(make, wire, record):
    """Past COMPACT_THRESHOLD consumed bytes the buffer is compacted (an overridden _compact)."""
    f = make()
    total = 3 * COMPACT_THRESHOLD // len(wire % 0) + 1
    data = b"".join(wire % i for i in range(total))
    got: list[Any] = []
    for at in range(0, len(data), 1000):  # chunks that do not align with records
        got += f.feed(data[at : at + 1000])
    assert got == [record(i) for i in range(total)]
    assert f.pending() == b""


class CountingLine(Line):
    """Parse state of its own in a slot: take_pending must reset it (Filter._forget_input)."""

    __slots__ = ("_seen",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._seen = 0

    def next_record(self) -> Any:
        record = super().next_record()
        if record is not NEED_DATA:
            self._seen += 1
        return record

    def clone(self) -> CountingLine:
        return CountingLine(**self._settings)


class TaggedComma(Filter):
    """Parse state in ``__dict__`` (no ``__slots__``), on the compiled or pure base."""

    def __init__(self) -> None:
        super().__init__()
        self.partial_records = 0

    def next_record(self) -> Any:
        i = self._buf.find(b",", self._start)
        if i < 0:
            self.partial_records = 1 if len(self._buf) > self._start else 0
            return NEED_DATA
        record = bytes(self._buf[self._start : i])
        self._start = i + 1
        return record

    def clone(self) -> TaggedComma:
        return TaggedComma()


#: Line's and Resp's parse state (C fields when compiled), compared with a fresh clone's.
PARSE_STATE = ("_start", "_scan", "_bn", "_braw", "_pos", "_need", "_fast_from", "_stack",
               "_btoks", "_bends", "_bregion")


@pytest.mark.parametrize("make, wire, parsed_first", [
    (Line, b"one\ntwo\nthr", "one"),
    (lambda: Line(literal=b"|", encoding=None), b"a|b|c", b"a"),
    (Resp, b"*1\r\n$3\r\nGET\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*1\r\n$4\r\nPI", [b"GET"]),
    (lambda: Resp(protocol=3), b"%1\r\n+a\r\n:1\r\n~1\r\n+x\r\n%1\r\n", {"a": 1}),
    (Resp, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nva", NEED_DATA),  # inside an open array
    (Line, b"no terminator yet", NEED_DATA),
])
def test_take_pending_leaves_the_compiled_state_as_a_fresh_clone(make, wire, parsed_first):
    """After take_pending the C fields (scan offsets, open aggregates, a batch) are a clone's:
    the same bytes fed again parse exactly as they do in a new filter."""
    f = make()
    f.receive(wire)
    assert f.next_record() == parsed_first
    taken = f.take_pending()
    assert wire.endswith(taken) and f.pending() == b"" and f.take_ready() == []
    fresh = f.clone()
    state = [name for name in PARSE_STATE if hasattr(fresh, name)]
    assert state and [getattr(f, n) for n in state] == [getattr(fresh, n) for n in state]
    assert f.feed(wire) == fresh.feed(wire)
    assert f.pending() == fresh.pending()


def test_take_pending_resets_the_parse_state_a_python_subclass_adds():
    """Slots and ``__dict__`` entries declared in Python are reset to a fresh clone's values."""
    f = CountingLine()
    f.receive(b"a\nb\nc")
    assert (f.next_record(), f.next_record(), f._seen) == ("a", "b", 2)
    assert f.take_pending() == b"c"
    assert f._seen == 0
    f.receive(b"x\n")
    assert (f.next_record(), f._seen) == ("x", 1)
    g = TaggedComma()
    assert g.feed(b"a,b") == [b"a"] and g.partial_records == 1
    assert g.take_pending() == b"b"
    assert g.partial_records == 0 and g.feed(b"c,") == [b"c"]


def test_a_subclass_may_override_take_ready_and_take_pending():
    """Both are cpdef in the compiled base: the base's take_pending reaches an overridden
    take_ready (JsonLines opts out of the batch path this way)."""

    class NoBatch(Line):
        def take_ready(self) -> list[Any]:
            return []

    f = NoBatch()
    f.receive(b"a\nb\nc\n")
    assert f.next_record() == "a"
    assert f.take_ready() == []
    assert f.take_pending() == b"b\nc\n"
    assert f.pending() == b"" and f.feed(b"z\n") == ["z"]
