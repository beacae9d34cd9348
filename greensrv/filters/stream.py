"""Stream: the byte chunks as they arrive, unframed (POE::Filter::Stream)."""

from __future__ import annotations

from typing import Any

from .base import NEED_DATA, Filter

__all__ = ["Stream"]


class Stream(Filter):
    """Each ``next_record`` returns all buffered bytes; ``encode`` sends bytes unchanged.

    Records depend on how the peer's bytes were chunked; only their concatenation does not.
    At the bottom of a :class:`~greensrv.filters.Stack` it is the identity layer, and a
    ``Map`` over it acts as a mod_perl connection filter on the raw byte stream.
    """

    __slots__ = ()

    chunked_records = True
    passthrough = True

    def next_record(self) -> Any:
        buf = self._buf
        if len(buf) == self._start:
            return NEED_DATA
        chunk = bytes(buf[self._start :]) if self._start else bytes(buf)
        buf.clear()
        self._start = 0
        return chunk

    def encode(self, record: Any) -> bytes:
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise TypeError(f"Stream.encode takes bytes, not {type(record).__name__}")
        return bytes(record)

    def encode_many(self, records: Any) -> bytes:
        return b"".join(records)

    def clone(self) -> Stream:
        return Stream()

    def __repr__(self) -> str:
        return "Stream()"
