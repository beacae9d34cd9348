"""Where input lines end: one splitter per :class:`~greensrv.filters.Line` input mode.

``Line`` picks one at construction (as h11 picks a reader per state, from a table) and keeps
everything the modes share: the buffer and how far it was searched, batching, ``max_length``,
decoding and encoding. A splitter only knows its terminator:

- :meth:`Splitter.find`: the next terminator at or after an offset, as a ``(begin, end)`` span;
- :meth:`Splitter.line_end`: where the line's content ends, given its terminator (the default
  mode drops a ``\\r`` before the ``\\n``; ``strict_crlf`` refuses a bare ``\\r`` or ``\\n``);
- :meth:`Splitter.split_text` / :meth:`Splitter.split_bytes`: a batch of whole lines split in
  bulk by C string methods, or None when the exact one-line path must report something;
- :meth:`Splitter.check_tail` and :meth:`Splitter.last_line`: the unterminated end of input.

A literal splitter's searches never look at a byte twice (Line remembers how far it searched);
the regexp splitter searches again from the line's start, at most ``max_length`` plus
``slack`` bytes.
"""

from __future__ import annotations

import re
from typing import Any

from .._accelerate import accelerate
from ..errors import FilterError

__all__ = ["LiteralSplitter", "NewlineSplitter", "RegexpSplitter", "Splitter",
           "StrictCrlfSplitter", "line_regexp", "terminator_bytes"]


def terminator_bytes(value: str | bytes, name: str, encoding: str | None) -> bytes:
    """A Line option's terminator as bytes (a ``str`` encoded); empty or another type is refused."""
    if isinstance(value, str):
        data = value.encode(encoding or "latin-1")
    elif isinstance(value, (bytes, bytearray)):
        data = bytes(value)
    else:
        raise TypeError(f"Line: {name} must be str or bytes, not {type(value).__name__}")
    if not data:
        raise ValueError(f"Line: {name} must not be empty")
    return data


def line_regexp(pattern: Any, encoding: str | None) -> re.Pattern[bytes]:
    """Line's ``input_regexp`` compiled over bytes; refused if it can match the empty string."""
    flags: int
    if isinstance(pattern, re.Pattern):
        flags = pattern.flags & ~re.UNICODE
        pattern = pattern.pattern
    else:
        flags = 0
    if isinstance(pattern, str):
        pattern = pattern.encode(encoding or "latin-1")
    if not isinstance(pattern, (bytes, bytearray)):
        raise TypeError(f"Line: input_regexp must be str, bytes or re.Pattern, not "
                        f"{type(pattern).__name__}")
    compiled = re.compile(bytes(pattern), flags)
    if compiled.match(b"") is not None:
        raise ValueError(f"Line: input_regexp {pattern!r} matches the empty string")
    return compiled


class Splitter:
    """Lines end at the literal ``sep``; the base of the literal modes."""

    __slots__ = ("batches", "partial", "sep", "sep_str", "slack")

    def __init__(self, sep: bytes) -> None:
        self.sep = sep
        #: The longest end of an unterminated buffer that may be half a terminator (not line).
        self.partial = sep[:-1]
        #: Bytes an unterminated buffer may pass max_length by before it is refused.
        self.slack = len(sep) - 1
        #: The terminator as text, when decoding a batch then splitting it is exact.
        self.sep_str: str | None = None
        #: Whether whole batches may be split in bulk (a regexp is searched line by line).
        self.batches = True

    def find(self, buf: bytearray, pos: int) -> tuple[int, int]:
        """The span of the first terminator at or after ``pos``, or ``(-1, -1)``."""
        i = buf.find(self.sep, pos)
        if i < 0:
            return (-1, -1)
        return (i, i + len(self.sep))

    def line_end(self, buf: bytearray, start: int, i: int) -> int:
        """Where the content of the line from ``start``, terminated at ``i``, ends."""
        return i

    def split_text(self, text: str, raw: bytes | bytearray) -> list[Any] | None:
        """``text`` (``raw`` decoded) split into lines plus a last empty item; None to refuse."""
        return text.split(self.sep_str)

    def split_bytes(self, data: bytes) -> list[Any] | None:
        """``data`` split into lines plus a last empty item; None to refuse."""
        return data.split(self.sep)

    def check_tail(self, buf: bytearray, pos: int, start: int) -> None:
        """No terminator from ``pos`` on: raise for anything already wrong with the line."""

    def last_line(self, rest: bytearray) -> bytearray:
        """The unterminated last line's content, at EOF."""
        return rest


class NewlineSplitter(Splitter):
    """The default: ``\\n`` ends a line and a ``\\r`` right before it belongs to the terminator."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(b"\n")
        self.partial = b"\r"  # a held-back \r may be half of \r\n
        self.slack = 1

    def line_end(self, buf: bytearray, start: int, i: int) -> int:
        return i - 1 if i > start and buf[i - 1] == 13 else i

    def split_text(self, text: str, raw: bytes | bytearray) -> list[Any] | None:
        if "\r" not in text:
            return text.split("\n")
        lines = text.split("\r\n")
        if len(lines) - 1 != raw.count(b"\n"):  # some lines end in a bare \n
            lines = text.replace("\r\n", "\n").split("\n")
        return lines

    def split_bytes(self, data: bytes) -> list[Any] | None:
        if 13 not in data:  # no CR (an int: memchr; a bytes needle costs far more)
            return data.split(b"\n")
        parts = data.split(b"\r\n")
        if len(parts) - 1 != data.count(b"\n"):
            parts = data.replace(b"\r\n", b"\n").split(b"\n")
        return parts

    def last_line(self, rest: bytearray) -> bytearray:
        return rest[:-1] if rest.endswith(b"\r") else rest


class LiteralSplitter(Splitter):
    """``input_literal``: a line ends at that exact byte string."""

    __slots__ = ()


class StrictCrlfSplitter(Splitter):
    """``strict_crlf=True``: only ``\\r\\n`` ends a line; a bare ``\\r`` or ``\\n`` is an error."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(b"\r\n")

    def line_end(self, buf: bytearray, start: int, i: int) -> int:
        bad = buf.find(b"\n", start, i)
        if bad < 0:
            bad = buf.find(b"\r", start, i)
        if bad >= 0:
            raise FilterError(f"Line(strict_crlf=True): bare {_name(buf[bad])} at byte "
                              f"{bad - start} of a line; only \\r\\n ends a line")
        return i

    def split_text(self, text: str, raw: bytes | bytearray) -> list[Any] | None:
        lines = text.split("\r\n")
        crlf = len(lines) - 1
        if raw.count(b"\r") != crlf or raw.count(b"\n") != crlf:
            return None  # a bare \r or \n somewhere: the exact path reports it
        return lines

    def split_bytes(self, data: bytes) -> list[Any] | None:
        crlf = data.count(b"\r\n")
        if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
            return None
        return data.split(b"\r\n")

    def check_tail(self, buf: bytearray, pos: int, start: int) -> None:
        bare = buf.find(b"\n", pos)
        if bare >= 0:
            raise FilterError(f"Line(strict_crlf=True): bare \\n at byte {bare - start} of a "
                              f"line; only \\r\\n ends a line")

    def last_line(self, rest: bytearray) -> bytearray:
        if rest.endswith(b"\r"):
            rest = rest[:-1]  # half of a \r\n
        if 13 in rest:  # a CR
            raise FilterError("Line(strict_crlf=True): bare \\r in the last line")
        return rest


#: With ``input_regexp`` the length of a half-received terminator is unknown, so an unterminated
#: buffer may exceed ``max_length`` by this many bytes before it is refused; longer terminators
#: are unusual (a CRLF pair is 2 bytes).
REGEXP_TERMINATOR_ALLOWANCE = 64


class RegexpSplitter(Splitter):
    """``input_regexp``: a line ends at the first non-empty match of a regular expression."""

    __slots__ = ("regex",)

    def __init__(self, regex: re.Pattern[bytes]) -> None:
        super().__init__(b"")
        self.regex = regex
        self.partial = b""
        self.slack = REGEXP_TERMINATOR_ALLOWANCE
        self.batches = False

    def find(self, buf: bytearray, pos: int) -> tuple[int, int]:
        regex = self.regex
        while True:
            m = regex.search(buf, pos)
            if m is None:
                return (-1, -1)
            if m.end() > m.start():
                return (m.start(), m.end())
            pos = m.start() + 1  # an empty match is no terminator


def _name(byte: int) -> str:
    return "\\r" if byte == 13 else "\\n"


accelerate(globals(), "greensrv.filters._c_splitters")
