"""LengthPrefixed: each record is a struct-packed integer length then that many bytes.

The length codec of POE::Filter::Block (``LengthCodec``) as a filter of its own, with any
``struct`` integer format for the header: ``"!I"`` (4 bytes, network order, the default),
``"!H"``, ``"<Q"``, ``">B"`` …
"""

from __future__ import annotations

import struct
from typing import Any

from ..errors import FilterError
from .base import NEED_DATA, Filter, check_limit

__all__ = ["LengthPrefixed"]

#: Largest payload accepted by default: 16 MiB holds any ordinary RPC message, yet a forged
#: header cannot make one connection buffer gigabytes. Raise it for bulk transfers.
DEFAULT_MAX_LENGTH = 16 * 1024 * 1024

_INT_CODES = frozenset("bBhHiIlLqQnN")


class LengthPrefixed(Filter):
    """``bytes`` payloads, each after a ``struct``-format length header.

    A header announcing more than ``max_length`` bytes (or a negative length, with a signed
    format) raises :class:`~greensrv.FilterError` as soon as the header arrives, before any of
    the payload is buffered.
    """

    __slots__ = ("_header", "_hsize", "_max", "_unpack")

    def __init__(self, header: str = "!I", max_length: int = DEFAULT_MAX_LENGTH) -> None:
        super().__init__()
        if not isinstance(header, str):
            raise TypeError(f"LengthPrefixed: header must be a struct format str, not "
                            f"{type(header).__name__}")
        code = header.lstrip("@=<>!")
        if len(code) != 1 or code not in _INT_CODES:
            raise ValueError(f"LengthPrefixed: header={header!r} is not one struct integer "
                             f"format (such as '!I', '<H', '>Q')")
        try:
            packer = struct.Struct(header)
        except struct.error as exc:
            raise ValueError(f"LengthPrefixed: header={header!r}: {exc}") from None
        self._header = packer
        self._hsize = packer.size
        self._unpack = packer.unpack_from
        self._max = check_limit("LengthPrefixed: max_length", max_length, 0)
        try:
            packer.pack(max_length)
        except struct.error:
            # The header cannot express it: the header's own range is the real limit.
            self._max = max(v for v in (2 ** (8 * packer.size - 1) - 1, 2 ** (8 * packer.size) - 1)
                            if _fits(packer, v))

    def next_record(self) -> Any:
        buf = self._buf
        start = self._start
        hsize = self._hsize
        if len(buf) - start < hsize:
            return NEED_DATA
        (length,) = self._unpack(buf, start)
        if length > self._max or length < 0:
            self._bad_length(length)
        begin = start + hsize
        end = begin + length
        if len(buf) < end:
            return NEED_DATA
        self._start = end
        return bytes(buf[begin:end])

    def feed(self, data: bytes) -> list[Any]:
        self.receive(data)
        buf = self._buf
        start = self._start
        hsize = self._hsize
        n = len(buf)
        if n - start < hsize:
            return []
        # Parse from one immutable copy: slicing bytes gives each payload in one step.
        view = bytes(buf[start:]) if start else bytes(buf)
        unpack = self._unpack
        limit = self._max
        out: list[Any] = []
        append = out.append
        pos = 0
        size = len(view)
        while pos + hsize <= size:
            (length,) = unpack(view, pos)
            if length > limit or length < 0:
                self._start = start + pos
                self._bad_length(length)
            end = pos + hsize + length
            if end > size:
                break
            append(view[pos + hsize : end])
            pos = end
        self._start = start + pos
        return out

    def _bad_length(self, length: int) -> None:
        raise FilterError(f"LengthPrefixed: header announces {length} bytes, max_length="
                          f"{self._max}")

    def encode(self, record: Any) -> bytes:
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise TypeError(f"LengthPrefixed.encode takes bytes, not {type(record).__name__}")
        n = len(record)
        if n > self._max:
            raise FilterError(f"LengthPrefixed: record of {n} bytes, max_length={self._max}")
        return self._header.pack(n) + record

    def encode_many(self, records: Any) -> bytes:
        pack = self._header.pack
        limit = self._max
        parts: list[Any] = []
        for record in records:
            if not isinstance(record, (bytes, bytearray)) or len(record) > limit:
                parts.append(self.encode(record))  # raises with the right message
            else:
                parts.append(pack(len(record)))
                parts.append(record)
        return b"".join(parts)

    def clone(self) -> LengthPrefixed:
        return LengthPrefixed(self._header.format, self._max)

    def __repr__(self) -> str:
        return f"LengthPrefixed(header={self._header.format!r}, max_length={self._max})"


def _fits(packer: struct.Struct, value: int) -> bool:
    try:
        packer.pack(value)
    except struct.error:
        return False
    return True
