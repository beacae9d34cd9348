"""Line: records separated by a terminator (POE::Filter::Line).

Four input modes, chosen at construction:

- default: a line ends at ``\\n``, and a ``\\r`` right before it is part of the terminator, so
  ``\\r\\n`` and ``\\n`` are both accepted (also when ``\\r`` and ``\\n`` arrive in different
  packets: the ``\\r`` is held back, never returned as an empty line);
- ``input_literal`` (or ``literal``): a line ends at that exact byte string;
- ``strict_crlf=True``: a line ends at ``\\r\\n`` and a bare ``\\r`` or ``\\n`` anywhere is a
  :class:`~greensrv.FilterError` (protocols such as SMTP, where accepting a bare ``\\n`` opens
  the door to message smuggling);
- ``input_regexp``: a line ends at the first match of a regular expression.

Each mode is a splitter (``greensrv/filters/splitters.py``) picked at construction; Line keeps
the buffer, batching, ``max_length``, decoding and encoding.

Speed: a chunk that arrives while no partial line is buffered and that ends with a terminator
(the usual read of a line protocol) is split straight from the received ``bytes``, without
copying it into the buffer; the chunk is kept so that :meth:`Line.pending` still returns the
lines not yet taken, and any anomaly buffers it as usual, so the exact path reports it. When
several lines are buffered, they are split, decoded and length-checked in bulk by
C code (``bytes.split``, ``bytes.decode``, ``max(map(len, ...))``) and handed out one at a time;
any anomaly (a bad byte, an overlong line) sends that batch through the exact one-line path,
which reports the offending line after returning the good ones before it.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Any

from .._accelerate import accelerate, load
from ..errors import FilterError
from .base import NEED_DATA, Filter, check_limit
from .splitters import (
    LiteralSplitter,
    NewlineSplitter,
    RegexpSplitter,
    Splitter,
    StrictCrlfSplitter,
    line_regexp,
    terminator_bytes,
)

__all__ = ["Line"]

#: Longest line accepted by default: 64 KiB is far above any line-protocol command (SMTP allows
#: 1000 bytes, IRC 512) yet caps what one client can make the server buffer.
DEFAULT_MAX_LENGTH = 65536

# Codecs in which every byte below 0x80 is that ASCII character and never part of a multibyte
# sequence, so decoding a whole batch and splitting the text equals splitting then decoding.
_ASCII_SAFE_CODECS = frozenset({"utf-8", "ascii", "iso8859-1"})
# Error handlers whose output never contains an ASCII character (so never a literal terminator):
# not "backslashreplace", whose "\\xff" could contain one.
_STD_ERRORS = frozenset({"strict", "replace", "ignore", "surrogateescape"})

#: The default mode's batch splitter in C (memchr, one pass, ``\r`` dropped), when compiled;
#: without it Line splits batches with bytes/str methods (``Line._split``).
_LINESPLIT = load("greensrv.filters._c_linesplit",
                  Path(__file__).with_name("_c_linesplit.pyx"))


class Line(Filter):
    """Lines without their terminator, as ``str`` (``bytes`` when ``encoding=None``).

    By default input lines end at ``\\n`` with an optional ``\\r`` before it, and output lines
    end with ``\\r\\n``. ``literal`` sets one terminator for both directions; ``input_literal``
    and ``output_literal`` set each direction; ``input_regexp`` ends input lines at a regular
    expression's match; ``strict_crlf=True`` accepts only ``\\r\\n`` and refuses a bare
    ``\\r`` or ``\\n``. ``max_length`` bounds a line in bytes, terminator excluded, and is
    enforced while the line is still arriving. ``encode`` does not escape terminators inside a
    record: a record containing one reaches the peer as several lines.
    """

    __slots__ = ("_ascii_text", "_batch_split", "_bn", "_braw", "_encoding", "_errors", "_max",
                 "_out_lit", "_out_str", "_scan", "_sep", "_settings", "_splitter", "_utf8",
                 "_whole")

    def __init__(
        self,
        literal: str | bytes | None = None,
        input_literal: str | bytes | None = None,
        output_literal: str | bytes = "\r\n",
        input_regexp: str | bytes | re.Pattern[Any] | None = None,
        encoding: str | None = "utf-8",
        errors: str = "strict",
        max_length: int = DEFAULT_MAX_LENGTH,
        *,
        strict_crlf: bool = False,
    ) -> None:
        super().__init__()
        check_limit("Line: max_length", max_length)
        self._settings = dict(
            literal=literal, input_literal=input_literal, output_literal=output_literal,
            input_regexp=input_regexp, encoding=encoding, errors=errors, max_length=max_length,
            strict_crlf=strict_crlf,
        )
        if encoding is not None:
            encoding = codecs.lookup(encoding).name  # fails at construction on an unknown codec
        if not isinstance(errors, str):
            raise TypeError(f"Line: errors must be a str, not {type(errors).__name__}")
        codecs.lookup_error(errors)
        # Errors name the argument the caller wrote: literal sets both directions.
        in_name, out_name = "input_literal", "output_literal"
        if literal is not None:
            if input_literal is not None:
                raise ValueError("Line: give literal or input_literal, not both")
            input_literal = output_literal = literal
            in_name = out_name = "literal"
        if input_regexp is not None and input_literal is not None:
            raise ValueError("Line: give input_regexp or an input literal, not both")
        if strict_crlf and (input_regexp is not None or input_literal is not None):
            raise ValueError("Line: strict_crlf fixes the input terminator to \\r\\n; "
                             "it cannot be combined with literal, input_literal or input_regexp")
        self._encoding = encoding
        self._errors = errors
        self._max = max_length
        splitter: Splitter
        if input_regexp is not None:
            splitter = RegexpSplitter(line_regexp(input_regexp, encoding))
        elif strict_crlf:
            splitter = StrictCrlfSplitter()
        elif input_literal is not None:
            splitter = LiteralSplitter(terminator_bytes(input_literal, in_name, encoding))
        else:
            splitter = NewlineSplitter()
        self._splitter = splitter
        self._sep = splitter.sep
        self._out_lit = terminator_bytes(output_literal, out_name, encoding)
        safe = encoding in _ASCII_SAFE_CODECS and errors in _STD_ERRORS
        # Decode a whole batch at once and split the text (only when that is equivalent).
        self._ascii_text = safe and self._sep.isascii()
        if self._ascii_text and splitter.batches:
            splitter.sep_str = self._sep.decode("ascii")
        self._batch_split = None  # split_newline_batch(buf, start, end, max_length, as_text)
        if _LINESPLIT is not None and type(splitter) is NewlineSplitter and (
                self._ascii_text or encoding is None):
            self._batch_split = _LINESPLIT.split_newline_batch
        # Encode many str records with one join (only for stateless, ASCII-safe codecs).
        self._out_str = (self._out_lit.decode(encoding)
                         if safe and encoding is not None and self._out_lit.isascii() else None)
        self._utf8 = encoding == "utf-8" and errors == "strict"
        # Whole-line chunks split in receive(): a literal terminator, and a next_record that
        # takes the batch it leaves (Line's own, or an override that calls it).
        self._whole = splitter.batches and _whole_lines_ok(type(self))
        self._scan = 0  # bytes before this offset are known to hold no terminator
        self._braw: bytes | bytearray | None = None  # raw bytes of the current batch
        self._bn = 0  # records in the current batch

    # -- input -------------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        # The whole-line path: nothing partial buffered, no batch left, and the chunk ends
        # with a terminator: its lines become the batch, split from ``data`` itself, which is
        # kept (``_braw``) for pending(). Anything the bulk split refuses (an overlong or
        # undecodable line, a bare CR in strict mode...) is buffered, and the exact path
        # reports it from next_record() as before.
        if (self._whole and type(data) is bytes and len(self._buf) == self._start
                and not self._ready and data.endswith(self._sep)):
            batch_split = self._batch_split
            if batch_split is not None:
                lines = batch_split(data, 0, len(data), self._max, self._ascii_text)
            else:
                lines = self._split(data)
            if lines is not None:
                lines.reverse()
                self._ready = lines
                self._braw = data
                self._bn = len(lines)
                return
        Filter.receive(self, data)  # (not super(): a compiled cpdef method has no __class__ cell)

    def next_record(self) -> Any:
        batch = self._ready
        if batch:
            return batch.pop()
        if len(self._buf) == self._start:
            return NEED_DATA  # nothing buffered: the usual state between reads
        lines = self._chunk()
        if lines is None:
            return NEED_DATA
        if len(lines) == 1:
            self._braw = None
            return lines[0]
        lines.reverse()
        self._ready = lines
        return lines.pop()

    def feed(self, data: bytes) -> list[Any]:
        self.receive(data)
        batch = self._ready
        out: list[Any] = []
        if batch:
            batch.reverse()
            out = batch
            self._ready = []
        while True:
            lines = self._chunk()
            if lines is None:
                self._braw = None
                return out
            if out:
                out += lines
            else:
                out = lines

    def _chunk(self) -> list[Any] | None:
        """Parse every complete line buffered; None (after the length check) if there is none."""
        buf = self._buf
        start = self._start
        splitter = self._splitter
        if not splitter.batches:  # input_regexp: a match may need bytes that came later
            first, after = splitter.find(buf, start)
            if first < 0:
                self._check_tail()
                return None
            return [self._one(first, after)]
        sep = self._sep
        scan = self._scan
        first = buf.find(sep, scan if scan > start else start)
        if first < 0:
            self._check_tail()
            return None
        seplen = len(sep)
        last = buf.rfind(sep, first + seplen)
        if last < 0:  # exactly one line: the plain path
            return [self._one(first, first + seplen)]
        end = last + seplen
        raw = buf[start:end]
        batch_split = self._batch_split
        lines = None if batch_split is None else batch_split(buf, start, end, self._max,
                                                             self._ascii_text)
        if lines is None:
            lines = self._split(raw)
        if lines is None:  # something to report: go line by line, good lines first
            return self._slow_batch(end)
        self._start = end
        self._scan = len(buf) - seplen + 1
        self._braw = raw
        self._bn = len(lines)
        return lines

    def _split(self, raw: bytes | bytearray) -> list[Any] | None:
        """Split a batch of whole lines in bulk, or None if any line needs the exact path."""
        enc = self._encoding
        limit = self._max
        short = len(raw) <= limit  # then no line in it can be too long
        if self._ascii_text:
            try:
                text = raw.decode(enc, self._errors)  # type: ignore[arg-type]
            except UnicodeDecodeError:
                return None
            lines = self._splitter.split_text(text, raw)
            if lines is None or lines.pop():
                return None  # (a self-overlapping literal may split otherwise than find())
            if short:
                return lines
            if len(text) == len(raw):  # ASCII: characters are bytes
                return None if max(map(len, lines)) > limit else lines
            raw_lines = raw.split(self._sep)
            raw_lines.pop()
            # (a line at the limit plus its \r also takes the exact path)
            return None if max(map(len, raw_lines)) > limit else lines
        parts = self._splitter.split_bytes(bytes(raw))
        if parts is None or parts.pop():
            return None
        if not short and max(map(len, parts)) > limit:
            return None
        if enc is None:
            return parts
        try:
            errors = self._errors
            return [p.decode(enc, errors) for p in parts]
        except UnicodeDecodeError:
            return None

    def _slow_batch(self, end: int) -> list[Any]:
        """Take lines one by one up to ``end``; stop before a bad one unless it is the first."""
        begin = self._start
        sep = self._sep
        seplen = len(sep)
        buf = self._buf
        lines: list[Any] = []
        try:
            while True:
                i = buf.find(sep, self._start)
                if i < 0 or i + seplen > end:
                    break
                lines.append(self._one(i, i + seplen))
        except FilterError:
            if not lines:
                raise
        self._scan = self._start
        self._braw = buf[begin : self._start]
        self._bn = len(lines)
        return lines

    def _one(self, i: int, after: int) -> Any:
        """Take the line whose terminator spans ``i`` to ``after``; exact checks."""
        buf = self._buf
        start = self._start
        end = self._splitter.line_end(buf, start, i)
        if end - start > self._max:
            self._too_long(end - start)
        line = self._decode(buf[start:end])
        self._start = after
        return line

    def _decode(self, raw: bytearray) -> Any:
        if self._encoding is None:
            return bytes(raw)
        try:
            return raw.decode(self._encoding, self._errors)
        except UnicodeDecodeError as exc:
            raise FilterError(f"Line: undecodable {self._encoding} input: {exc.reason} "
                              f"at byte {exc.start} of a {len(raw)}-byte line") from None

    def _check_tail(self) -> None:
        """No terminator buffered: refuse now if the line already passed max_length."""
        buf = self._buf
        n = len(buf)
        start = self._start
        splitter = self._splitter
        seen = n - start
        over = seen - self._max
        splitter.check_tail(buf, max(self._scan, start), start)
        if over > 0:
            if not splitter.batches:  # a regexp terminator's length is unknown
                if over > splitter.slack:
                    self._too_long(seen)
            else:
                # The longest end of the buffer that may begin a terminator is not line.
                partial = splitter.partial
                k = min(len(partial), seen)
                while k and not buf.endswith(partial[:k]):
                    k -= 1
                if over > k:
                    self._too_long(seen - k)
        if splitter.batches:
            self._scan = n - len(self._sep) + 1

    def _too_long(self, seen: int) -> None:
        raise FilterError(f"{type(self).__name__}: line longer than max_length={self._max} bytes "
                          f"({seen} bytes without a terminator)")

    def _compact(self) -> None:
        self._scan = max(0, self._scan - self._start)
        Filter._compact(self)  # (not super(): a compiled cpdef method has no __class__ cell)

    def pending(self) -> bytes:
        rest = bytes(self._buf[self._start :])
        batch = self._ready
        raw = self._braw
        if not batch or raw is None:
            return rest
        # The batch holds lines parsed from ``raw`` but not returned: find where they begin.
        sep = self._sep
        pos = 0
        for _ in range(self._bn - len(batch)):
            pos = raw.find(sep, pos) + len(sep)
        return bytes(raw[pos:]) + rest

    def pending_size(self) -> int:
        if self._ready:
            return len(self.pending())
        return len(self._buf) - self._start

    def feed_eof(self) -> list[Any]:
        if not self._ready and len(self._buf) == self._start:
            return []  # the usual end: nothing left over
        out = self.feed(b"")
        buf = self._buf
        if len(buf) > self._start:  # an unterminated last line is still a line
            rest = self._splitter.last_line(buf[self._start :])
            if len(rest) > self._max:
                self._too_long(len(rest))
            line = self._decode(rest)
            buf.clear()
            self._start = self._scan = 0
            out.append(line)
        return out

    # -- output ------------------------------------------------------------------------------
    def encode(self, record: Any) -> bytes:
        if type(record) is bytes:
            return record + self._out_lit
        if self._utf8 and type(record) is str:
            return record.encode() + self._out_lit
        if isinstance(record, str):
            if self._encoding is None:
                raise TypeError("Line(encoding=None).encode takes bytes, not str")
            return record.encode(self._encoding, self._errors) + self._out_lit
        if not isinstance(record, (bytes, bytearray, memoryview)):
            raise TypeError(f"Line.encode takes str or bytes, not {type(record).__name__}")
        return bytes(record) + self._out_lit

    def ascii_terminator(self) -> str | None:
        # ASCII text encodes alike in every codec _out_str allows; a subclass that changes
        # encode() must not inherit the shortcut.
        return self._out_str if type(self).encode is _LINE_ENCODE else None

    def encode_many(self, records: Any) -> bytes:
        if type(self).encode is not _LINE_ENCODE:  # a subclass's encode() sees every record
            return Filter.encode_many(self, records)
        lit = self._out_str
        if lit is not None:
            if not isinstance(records, (list, tuple)):
                records = list(records)
            try:
                joined = lit.join(records)
            except TypeError:
                pass  # some records are bytes: the general path below
            else:
                if joined or records:
                    return (joined + lit).encode(self._encoding, self._errors)  # type: ignore[arg-type]
                return b""
        else:
            if not isinstance(records, (list, tuple)):
                records = list(records)
            try:
                joined_bytes = self._out_lit.join(records)
            except TypeError:
                pass
            else:
                return joined_bytes + self._out_lit if records else b""
        encode = self.encode
        return b"".join([encode(r) for r in records])

    def _forget_input(self) -> None:
        # The parse state Filter._forget_input cannot reach in the compiled build (C fields).
        self._scan = 0
        self._braw = None
        self._bn = 0
        Filter._forget_input(self)  # (not super(): a compiled cpdef method has no __class__ cell)

    def clone(self) -> Line:
        if type(self) is not Line:  # a subclass may add settings of its own
            return type(self)(**self._settings)  # type: ignore[arg-type]
        # Copy the validated settings instead of validating them again: the server clones
        # its filter for every connection, so this is on the accept path.
        new = Line.__new__(Line)
        Filter.__init__(new)
        # One assignment per setting slot, spelled out: a getattr/setattr loop costs twice as
        # much, once per accepted client.
        new._ascii_text = self._ascii_text
        new._batch_split = self._batch_split
        new._encoding = self._encoding
        new._errors = self._errors
        new._max = self._max
        new._out_lit = self._out_lit
        new._out_str = self._out_str
        new._sep = self._sep
        new._settings = self._settings
        new._splitter = self._splitter  # immutable once built: shared by the clones
        new._utf8 = self._utf8
        new._whole = self._whole
        new._scan = new._bn = 0
        new._ready = []
        new._braw = None
        return new

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings.items()
                         if v != _DEFAULTS[k])
        return f"Line({args})"


def _whole_lines_ok(cls: type) -> bool:
    """Whether ``cls`` takes the batches receive() splits: its next_record is Line's, or an
    override that says it calls Line's (``_uses_line_next_record``, as JsonLines does); an
    override that parsed the buffer itself would never see them."""
    return (cls.next_record is _LINE_NEXT  # type: ignore[attr-defined]
            or bool(getattr(cls, "_uses_line_next_record", False)))


#: Line's own encode(), to tell whether a subclass overrides it (looked up in the class dict: in
#: the compiled class, ``Line.encode`` would name the C method rather than the descriptor).
_LINE_ENCODE = Line.__dict__["encode"]
_LINE_NEXT = Line.__dict__["next_record"]

_DEFAULTS: dict[str, Any] = dict(
    literal=None, input_literal=None, output_literal="\r\n", input_regexp=None,
    encoding="utf-8", errors="strict", max_length=DEFAULT_MAX_LENGTH, strict_crlf=False,
)


accelerate(globals(), "greensrv.filters._c_line",
           requires=("greensrv.filters.base", "greensrv.filters.splitters"))
