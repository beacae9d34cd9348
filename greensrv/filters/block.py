"""Block: fixed-size records (POE::Filter::Block with BlockSize)."""

from __future__ import annotations

from typing import Any

from ..errors import FilterError
from .base import NEED_DATA, Filter

__all__ = ["Block"]


class Block(Filter):
    """Records are exactly ``size`` bytes; ``encode`` refuses a record of another size."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"Block: size must be a positive int, not {size!r}")
        super().__init__()
        self.size = size

    def next_record(self) -> Any:
        start = self._start
        end = start + self.size
        if len(self._buf) < end:
            return NEED_DATA
        self._start = end
        return bytes(self._buf[start:end])

    def feed(self, data: bytes) -> list[Any]:
        self.receive(data)
        buf, start, size = self._buf, self._start, self.size
        count = (len(buf) - start) // size
        if not count:
            return []
        end = start + count * size
        chunk = bytes(buf[start:end])
        self._start = end
        return [chunk[i : i + size] for i in range(0, count * size, size)]

    def encode(self, record: Any) -> bytes:
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise TypeError(f"Block.encode takes bytes, not {type(record).__name__}")
        if len(record) != self.size:
            raise FilterError(f"Block: record of {len(record)} bytes, size={self.size}")
        return bytes(record)

    def clone(self) -> Block:
        return Block(self.size)

    def __repr__(self) -> str:
        return f"Block({self.size})"
