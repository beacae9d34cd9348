"""Map and Grep: record filters that transform or select records (POE::Filter::Map / Grep).

Their "wire" is the records of the layer below them in a :class:`~greensrv.filters.Stack`.
Used alone, each chunk of bytes received is one record, as in POE.

How ``Grep`` drops on output: inside a Stack, layers hand records down with
:meth:`~greensrv.filters.Filter.encode_list`, and ``Grep.encode_list`` simply leaves a rejected
record out, so the layers below never see it (an empty line is not sent in its place). Alone,
``Grep.encode`` returns ``b""`` for a rejected record: nothing goes on the wire.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import FilterError
from .base import NEED_DATA, Filter

__all__ = ["Grep", "Map"]

_BYTES = (bytes, bytearray, memoryview)


class _RecordFilter(Filter):
    """A queue of whole records from the layer below, instead of a byte buffer."""

    __slots__ = ("_get", "_items", "_put")

    record_filter = True

    def __init__(self, get: Callable[[Any], Any] | None = None,
                 put: Callable[[Any], Any] | None = None) -> None:
        super().__init__()
        for name, fn in (("get", get), ("put", put)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{type(self).__name__}: {name} must be callable, not "
                                f"{type(fn).__name__}")
        self._get = get
        self._put = put
        self._items: deque[Any] = deque()

    def receive(self, data: bytes) -> None:
        if data:  # alone, each chunk read is one record; an empty chunk is none
            self._items.append(data)

    def receive_record(self, record: Any) -> None:
        self._items.append(record)

    def pending(self) -> bytes:
        items = self._items
        if all(isinstance(i, _BYTES) for i in items):
            return b"".join(items)
        raise FilterError(f"{type(self).__name__}: holds {len(items)} records that are not "
                          f"bytes, so they have no wire form")

    def pending_size(self) -> int:
        return len(self.pending()) if self._items else 0

    def _check_wire(self, data: Any) -> bytes:
        if not isinstance(data, _BYTES):
            raise TypeError(f"{type(self).__name__} alone must encode to bytes, not "
                            f"{type(data).__name__}; put it in a Stack above a filter that "
                            f"takes these records")
        return bytes(data)

    def encode_many(self, records: Iterable[Any]) -> bytes:
        check = self._check_wire
        return b"".join([check(item) for item in self.encode_list(records)])

    def __repr__(self) -> str:
        return f"{type(self).__name__}(get={self._get!r}, put={self._put!r})"


class Map(_RecordFilter):
    """``get(record)`` transforms each input record, ``put(record)`` each output record.

    ``None`` leaves that direction unchanged. Both callables are shared by ``clone()``; give
    the server a factory (``filter=lambda: Stack(...)``) when they carry per-client state.
    """

    __slots__ = ()

    def next_record(self) -> Any:
        items = self._items
        if not items:
            return NEED_DATA
        get = self._get
        return items.popleft() if get is None else get(items.popleft())

    def encode(self, record: Any) -> bytes:
        put = self._put
        return self._check_wire(record if put is None else put(record))

    def encode_list(self, records: Iterable[Any]) -> list[Any]:
        put = self._put
        return list(records) if put is None else [put(r) for r in records]

    def clone(self) -> Map:
        return Map(self._get, self._put)


class Grep(_RecordFilter):
    """Keep the input records ``get(record)`` accepts and the output records ``put`` accepts.

    A rejected output record is left out of :meth:`encode_list` (inside a Stack) and encodes to
    ``b""`` alone: either way nothing reaches the wire for it.
    """

    __slots__ = ()

    def next_record(self) -> Any:
        items = self._items
        get = self._get
        while items:
            record = items.popleft()
            if get is None or get(record):
                return record
        return NEED_DATA

    def encode(self, record: Any) -> bytes:
        put = self._put
        if put is None or put(record):
            return self._check_wire(record)
        return b""

    def encode_list(self, records: Iterable[Any]) -> list[Any]:
        put = self._put
        return list(records) if put is None else [r for r in records if put(r)]

    def clone(self) -> Grep:
        return Grep(self._get, self._put)
