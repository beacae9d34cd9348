"""Block: fixed-size records (POE::Filter::Block with BlockSize)."""

from __future__ import annotations

from typing import Any

from .base import NEED_DATA, Filter


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

    def encode(self, record: Any) -> bytes:
        if len(record) != self.size:
            raise ValueError(f"Block: record of {len(record)} bytes, expected {self.size}")
        return bytes(record)

    def clone(self) -> Block:
        return Block(self.size)

    def __repr__(self) -> str:
        return f"Block({self.size})"
