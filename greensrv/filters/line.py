"""Line: records separated by a terminator (POE::Filter::Line)."""

from __future__ import annotations

from typing import Any

from ..errors import FilterError
from .base import NEED_DATA, Filter

#: Longest line accepted by default: 64 KiB is far above any line-protocol command (SMTP allows
#: 1000 bytes, IRC 512) yet caps what one client can make the server buffer.
DEFAULT_MAX_LENGTH = 65536


def _to_bytes(value: str | bytes, name: str) -> bytes:
    data = value.encode("latin-1") if isinstance(value, str) else bytes(value)
    if not data:
        raise ValueError(f"Line: {name} must not be empty")
    return data


class Line(Filter):
    """Lines without their terminator, as ``str`` (``bytes`` when ``encoding=None``).

    By default input lines end at ``\\n`` with an optional ``\\r`` before it, and output lines
    end with ``\\r\\n``. ``literal`` sets one terminator for both directions; ``input_literal``
    and ``output_literal`` set each direction. ``max_length`` bounds a line in bytes, terminator
    excluded, and is enforced while the line is still arriving.
    """

    __slots__ = ("_crlf", "_encoding", "_errors", "_in_lit", "_max", "_out_lit", "_scan", "_settings")

    def __init__(
        self,
        literal: str | bytes | None = None,
        input_literal: str | bytes | None = None,
        output_literal: str | bytes = "\r\n",
        input_regexp: Any = None,
        encoding: str | None = "utf-8",
        errors: str = "strict",
        max_length: int = DEFAULT_MAX_LENGTH,
    ) -> None:
        super().__init__()
        if input_regexp is not None:
            raise NotImplementedError("Line: input_regexp is not supported yet")
        if not isinstance(max_length, int) or max_length < 1:
            raise ValueError(f"Line: max_length must be a positive int, not {max_length!r}")
        self._settings = dict(
            literal=literal, input_literal=input_literal, output_literal=output_literal,
            input_regexp=input_regexp, encoding=encoding, errors=errors, max_length=max_length,
        )
        if literal is not None:
            input_literal = output_literal = literal
        self._in_lit = _to_bytes(input_literal, "input_literal") if input_literal is not None else None
        self._crlf = self._in_lit is None  # the default: "\n" with an optional "\r" before it
        self._out_lit = _to_bytes(output_literal, "output_literal")
        if encoding is not None:
            "".encode(encoding)  # fail at construction on an unknown codec
        self._encoding = encoding
        self._errors = errors
        self._max = max_length
        self._scan = 0  # bytes before this offset are known to hold no terminator

    def next_record(self) -> Any:
        buf = self._buf
        start = self._start
        lit = b"\n" if self._crlf else self._in_lit
        scan = self._scan
        i = buf.find(lit, scan if scan > start else start)
        if i < 0:
            n = len(buf)
            # Allow a half-received terminator at the end when checking the limit.
            slack = len(lit) if self._crlf else len(lit) - 1
            if n - start > self._max + slack:
                self._too_long(n - start)
            self._scan = n - len(lit) + 1
            return NEED_DATA
        end = i
        if self._crlf and end > start and buf[end - 1] == 13:
            end -= 1
        if end - start > self._max:
            self._too_long(end - start)
        line = buf[start:end]
        self._start = i + len(lit)
        if self._encoding is None:
            return bytes(line)
        try:
            return line.decode(self._encoding, self._errors)
        except UnicodeDecodeError as exc:
            raise FilterError(f"Line: undecodable {self._encoding} input: {exc.reason} "
                              f"at byte {exc.start} of a {end - start}-byte line") from None

    def _too_long(self, seen: int) -> None:
        raise FilterError(f"Line: line longer than max_length={self._max} bytes "
                          f"({seen} bytes without a terminator)")

    def _compact(self) -> None:
        self._scan = max(0, self._scan - self._start)
        super()._compact()

    def feed_eof(self) -> list[Any]:
        out = self.feed(b"")
        if len(self._buf) > self._start:  # an unterminated last line is still a line
            rest = bytes(self._buf[self._start :])
            self._buf.clear()
            self._start = self._scan = 0
            if self._crlf and rest.endswith(b"\r"):
                rest = rest[:-1]
            out.append(rest if self._encoding is None else rest.decode(self._encoding, self._errors))
        return out

    def encode(self, record: Any) -> bytes:
        if self._encoding is not None and isinstance(record, str):
            return record.encode(self._encoding, self._errors) + self._out_lit
        return bytes(record) + self._out_lit

    def encode_many(self, records: Any) -> bytes:
        lit = self._out_lit
        if self._encoding is not None:
            enc, errors = self._encoding, self._errors
            parts = [r.encode(enc, errors) if isinstance(r, str) else bytes(r) for r in records]
        else:
            parts = [bytes(r) for r in records]
        parts.append(b"")
        return lit.join(parts)

    def clone(self) -> Line:
        return Line(**self._settings)

    def __repr__(self) -> str:
        return f"Line(max_length={self._max})"
