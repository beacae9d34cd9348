"""Netstring: D. J. Bernstein's netstrings, ``<decimal length>:<bytes>,`` (``12:hello world!,``).

See https://cr.yp.to/proto/netstrings.txt. The length has no sign, no spaces and no leading
zeros (``0:,`` is the empty string); anything else is a :class:`~greensrv.FilterError`.
"""

from __future__ import annotations

from typing import Any

from ..errors import FilterError
from .base import NEED_DATA, Filter, check_limit

__all__ = ["Netstring"]

#: Largest payload accepted by default: 16 MiB holds any ordinary message, yet a forged length
#: cannot make one connection buffer gigabytes. Raise it for bulk transfers.
DEFAULT_MAX_LENGTH = 16 * 1024 * 1024

_DIGITS = b"0123456789"


class Netstring(Filter):
    """``bytes`` payloads framed as netstrings; the length is checked as soon as it arrives."""

    __slots__ = ("_max", "_max_digits")

    def __init__(self, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        super().__init__()
        self._max = check_limit("Netstring: max_length", max_length, 0)
        self._max_digits = len(str(max_length))

    def next_record(self) -> Any:
        buf = self._buf
        start = self._start
        n = len(buf)
        if n == start:
            return NEED_DATA
        # The length prefix is at most _max_digits long, so this search is bounded.
        colon = buf.find(b":", start, start + self._max_digits + 1)
        if colon < 0:
            self._check_digits(buf[start : start + self._max_digits + 1], n - start)
            return NEED_DATA
        digits = buf[start:colon]
        self._check_digits(digits, len(digits), complete=True)
        length = int(digits)
        if length > self._max:
            self._error(f"length {length} over max_length={self._max}")
        begin = colon + 1
        end = begin + length
        if n <= end:
            return NEED_DATA
        if buf[end] != 44:  # ","
            got = bytes(buf[end : end + 1])
            self._error(f"expected ',' after a {length}-byte payload, got {got!r}")
        self._start = end + 1
        return bytes(buf[begin:end])

    def _check_digits(self, digits: bytearray, seen: int, complete: bool = False) -> None:
        if digits.strip(_DIGITS):
            self._error(f"bad length prefix {bytes(digits[:24])!r}")
        if len(digits) > self._max_digits:
            self._error(f"length prefix longer than the {self._max_digits} digits of "
                        f"max_length={self._max} ({seen} bytes without ':')")
        if complete and not digits:
            self._error("empty length prefix")
        if len(digits) > 1 and digits[0] == 48:
            self._error(f"length prefix with a leading zero {bytes(digits)!r}")

    def _error(self, what: str) -> None:
        raise FilterError(f"Netstring: {what}")

    def encode(self, record: Any) -> bytes:
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise TypeError(f"Netstring.encode takes bytes, not {type(record).__name__}")
        n = len(record)
        if n > self._max:
            raise FilterError(f"Netstring: record of {n} bytes, max_length={self._max}")
        return b"%d:%s," % (n, record)

    def clone(self) -> Netstring:
        return Netstring(self._max)

    def __repr__(self) -> str:
        return f"Netstring(max_length={self._max})"
