"""Resp: the Redis serialization protocol, RESP2 and RESP3
(https://redis.io/docs/reference/protocol-spec/).

Input accepts both versions at any time (a RESP2 peer never sends RESP3 types); output is RESP2
unless ``Resp(protocol=3)`` or ``flt.protocol = 3`` (mid-stream, e.g. after ``HELLO 3``).
Records, both ways:

==============================  =================================  ==============================
wire type                       decoded as                         encoded from (RESP2 form)
==============================  =================================  ==============================
simple string ``+OK``           ``str`` (UTF-8, surrogateescape)   ``str`` without CR or LF
error ``-ERR x``                :class:`RespError`                 :class:`RespError`
integer ``:42``                 ``int``                            ``int`` within 64 bits
bulk string ``$3 foo``          ``bytes``                          ``bytes``, ``bytearray``,
                                                                   ``memoryview``; a ``str``
                                                                   with CR/LF
null bulk ``$-1``               ``None``                           ``None`` (RESP2)
array ``*2 ...``                ``list`` (nested to max_depth)     ``list`` or ``tuple``
null array ``*-1``              ``None``                           —
inline command ``PING a b``     ``list`` of ``bytes`` (input)      —
3: null ``_``                   ``None``                           ``None`` (``$-1``)
3: boolean ``#t``               ``bool``                           ``bool`` (``:1``/``:0``)
3: double ``,1.5`` ``,inf``     ``float`` (``inf``, ``nan`` too)   ``float`` (bulk ``repr``)
3: big number ``(123...``       ``int``                            ``int`` past 64 bits (bulk)
3: blob error ``!5 ERR x``      :class:`RespError`                 :class:`RespError` with CR/LF
                                                                   (CR/LF as spaces)
3: verbatim ``=7 txt:abc``      :class:`Verbatim` (a ``str``       :class:`Verbatim` (bulk)
                                with ``.fmt``)
3: map ``%1 k v``               ``dict``                           ``dict`` (flat array)
3: set ``~2 a b``               ``set``                            ``set``/``frozenset`` (array)
3: push ``>3 ...``              :class:`Push` (a ``list``)         :class:`Push` (array)
3: attribute ``|1 k v`` value   :class:`Attributed` (``.value``,   :class:`Attributed` (the
                                ``.attributes``)                   value alone)
==============================  =================================  ==============================

The last column is the RESP3 encoding with ``protocol=3`` and, in brackets, what RESP2 sends
instead. Map keys and set members that Python cannot hash are frozen (arrays as ``tuple``,
sets as ``frozenset``). Every aggregate (array, map, set, push, attribute) obeys
``max_array_length`` (a map's count is its pairs) and ``max_depth``.

A request from a real client (``redis-cli``, ``redis-benchmark``, redis-py) is an array of bulk
strings, so a server sees ``[b"SET", b"key", b"value"]``; an inline command typed into telnet
(split on spaces and tabs, without Redis's quoting rules) gives the same shape.

On a client (``Resp(client=True)``, or ``use_on_client``), every record put is a command, sent
as an array of bulk strings (``resp_encode.py`` says which words it takes). Replies are decoded
as the table says. The replies servers send most are encoded from ready-made pieces
(``resp_encode.py``); requests are scanned in C when compiled (``resp_scan.py``).

Parsing is incremental: an array's elements already parsed are kept while the rest arrives,
a bulk string's payload is not looked at until all of it is there, and a line is never searched
twice, so a peer sending one byte at a time costs linear time.
"""

from __future__ import annotations

from typing import Any

from .._accelerate import accelerate
from ..errors import FilterError
from .base import NEED_DATA, Filter
from .resp3 import (
    ATTRIBUTE,
    ATTRIBUTED,
    INT_MAX,
    INT_MIN,
    Attributed,
    Push,
    RespError,
    Verbatim,
    blob_value,
    check_limits,
    check_protocol,
    close_aggregate,
    empty_aggregate,
    encode_other,
    scalar_value,
)
from .resp_encode import (
    BULK_HEADS,
    SIMPLE,
    SMALL_INTS,
    base_type,
    encode_command,
    error,
    simple_string,
)
from .resp_scan import COMPILED as _SCAN_IN_C
from .resp_scan import MAX_INT_CHARS as _MAX_INT_CHARS
from .resp_scan import scan_requests, split_messages

__all__ = ["Attributed", "Push", "Resp", "RespError", "Verbatim"]

# resp_encode's tables under names of this module's own, which _c_resp.pxd types (a list index
# and a dict lookup in C, without a call); the import names stay untyped for Cython.
_SIMPLE = SIMPLE
_BULK_HEADS = BULK_HEADS
_SMALL_INTS = SMALL_INTS

#: Longest bulk string accepted by default: 16 MiB is far above the values a Redis-like
#: in-process service stores, while a forged length cannot make one client buffer Redis's
#: own 512 MB limit. Raise it for large values.
DEFAULT_MAX_BULK_LENGTH = 16 * 1024 * 1024
#: Most elements in one aggregate (array, set, push; pairs of a map or attribute): 1 Mi, as
#: Redis allows for a command's arguments.
DEFAULT_MAX_ARRAY_LENGTH = 1024 * 1024
#: Deepest array nesting: commands are flat and replies nest a few levels; deeper nesting only
#: serves to exhaust memory or the stack of whoever walks the value.
DEFAULT_MAX_DEPTH = 32
#: Longest line (inline command, simple string, error, integer or length header): Redis's own
#: limit for inline commands (PROTO_INLINE_MAX_SIZE, 64 KiB).
DEFAULT_MAX_LINE_LENGTH = 64 * 1024
#: Largest whole message (an array and everything in it): bounds what one command with many
#: large arguments makes the server buffer before the command is complete.
DEFAULT_MAX_MESSAGE_LENGTH = 64 * 1024 * 1024

#: Below this many buffered bytes the exact parser is as fast as a split.
_FAST_MIN = 256

_TYPE_BYTES = frozenset(b"$*+-:%~,#_(=!>|")
#: RESP3 aggregates, by type byte: "%" map, "~" set, ">" push, "|" attribute.
_AGGREGATES = frozenset(b"%~>|")
_NAMES = {42: "array", 37: "map", 126: "set", 62: "push", 124: "attribute"}

class Resp(Filter):
    """RESP2 values both ways; inline commands accepted on input. See the module docstring."""

    __slots__ = ("_bends", "_bregion", "_btoks", "_client", "_fast_from", "_max_array",
                 "_max_bulk", "_max_depth", "_max_line", "_max_message", "_need", "_pos",
                 "_protocol", "_scan", "_stack")

    def __init__(
        self,
        max_bulk_length: int = DEFAULT_MAX_BULK_LENGTH,
        max_array_length: int = DEFAULT_MAX_ARRAY_LENGTH,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_line_length: int = DEFAULT_MAX_LINE_LENGTH,
        max_message_length: int = DEFAULT_MAX_MESSAGE_LENGTH,
        protocol: int = 2,
        client: bool = False,
    ) -> None:
        super().__init__()
        self._client = bool(client)  # every record put is a command (see use_on_client)
        (self._max_bulk, self._max_array, self._max_depth, self._max_line,
         self._max_message) = check_limits(max_bulk_length, max_array_length, max_depth,
                                           max_line_length, max_message_length)
        self._protocol = check_protocol(protocol)
        self._pos = 0  # parse position; self._start is where the current message began
        self._need = 0  # no progress is possible before the buffer holds this many bytes
        self._scan = 0  # no line terminator before this offset (for the element at _pos)
        # open aggregates: [elements so far, elements left, kind (0: array, else resp3's)]
        self._stack: list[list[Any]] = []
        # The bulk path: messages parsed from one split of the buffer, handed out one at a time.
        self._btoks: list[bytes] = []  # the split the batch came from
        self._bends: list[int] = []  # token index where each message of the batch ends
        self._bregion = b""  # the bytes that were split
        self._fast_from = 0  # bytes before this offset were split once: no bulk path there

    # -- input -------------------------------------------------------------------------------
    def next_record(self) -> Any:
        batch = self._ready
        if batch:
            return batch.pop()
        buf = self._buf
        start = self._start
        if (self._pos == start and not self._need and self._scan <= start
                and start >= self._fast_from and len(buf) - start >= _FAST_MIN):
            batch = self._bulk_scan() if _SCAN_IN_C else []
            if not batch:
                batch = self._bulk_parse()
            if batch:
                return batch.pop()
        return self._parse_one()

    def feed(self, data: bytes) -> list[Any]:
        self.receive(data)
        out: list[Any] = []
        batch = self._ready
        if batch:
            batch.reverse()
            out = batch
            self._ready = []
        next_record = self.next_record
        while True:
            record = next_record()
            if record is NEED_DATA:
                return out
            batch = self._ready
            if batch:
                out.append(record)
                batch.reverse()
                out += batch
                self._ready = []
            else:
                out.append(record)

    def _bulk_parse(self) -> list[Any]:
        """Parse the complete messages in the buffer from one ``split`` (C speed:
        ``resp_scan.split_messages``); the exact parser takes what it stops at, one message at
        a time, up to the end of what was split here."""
        start = self._start
        region = bytes(self._buf[start:])
        self._fast_from = start + len(region)
        if len(region) > self._max_message:
            return []
        toks = region.split(b"\r\n")
        out, ends, i = split_messages(toks, self._max_bulk, self._max_line, self._max_array)
        if not out:
            return out
        consumed = sum(map(len, toks[:i])) + 2 * i
        self._start = self._pos = start + consumed
        if len(out) > 1:
            self._btoks = toks
            self._bends = ends
            self._bregion = region
        out.reverse()
        self._ready = out
        return out

    def _bulk_scan(self) -> list[Any]:
        """Parse the complete requests in the buffer byte by byte (the compiled build's path:
        ``resp_scan.py``); stops at anything else, which ``_bulk_parse`` then takes."""
        start = self._start
        region = bytes(self._buf[start:])
        if len(region) > self._max_message:
            return []
        out, ends, pos = scan_requests(region, self._max_bulk, self._max_array)
        if not out:
            return out
        self._start = self._pos = start + pos
        if len(out) > 1:
            self._btoks = []  # (empty: _bends are byte offsets into _bregion, not token indexes)
            self._bends = ends
            self._bregion = region
        out.reverse()
        self._ready = out
        return out

    def _parse_one(self) -> Any:
        buf = self._buf
        n = len(buf)
        if n < self._need:
            return NEED_DATA
        pos = self._pos
        stack = self._stack
        value: Any
        while pos < n:
            t = buf[pos]
            if t in _TYPE_BYTES:
                scan = self._scan
                nl = buf.find(b"\r\n", scan if scan > pos else pos)
                if nl < 0:
                    self._scan = n - 1
                    if n - pos > self._max_line + 1:
                        self._error(f"line longer than max_line_length={self._max_line} "
                                    f"({n - pos} bytes without CRLF)")
                    break
                if nl - pos > self._max_line:
                    self._error(f"line longer than max_line_length={self._max_line} "
                                f"({nl - pos} bytes)")
                if t == 36 or t == 61 or t == 33:  # $ bulk string, = verbatim, ! blob error
                    length = self._int(buf, pos + 1, nl)
                    if length < 0:
                        if length != -1 or t != 36:
                            self._error(f"bulk length {length}")
                        value = None
                        pos = nl + 2
                    else:
                        if length > self._max_bulk:
                            self._error(f"bulk string of {length} bytes over max_bulk_length="
                                        f"{self._max_bulk}")
                        end = nl + 2 + length
                        if end + 2 > n:
                            self._pos = pos
                            self._need = end + 2
                            self._check_message(end + 2)
                            return NEED_DATA
                        if buf[end] != 13 or buf[end + 1] != 10:
                            self._error(f"no CRLF after a {length}-byte bulk string")
                        value = bytes(buf[nl + 2 : end])
                        if t != 36:
                            value = self._resp3(blob_value, t, value)
                        pos = end + 2
                elif t == 42 or t in _AGGREGATES:  # * array; % map, ~ set, > push, | attribute
                    count = self._int(buf, pos + 1, nl)
                    pos = nl + 2
                    kind = 0 if t == 42 else t
                    if count < 0:
                        if count != -1 or kind:
                            self._error(f"{_NAMES[t]} length {count}")
                        value = None
                    elif count > self._max_array:
                        self._error(f"{_NAMES[t]} of {count} elements over max_array_length="
                                    f"{self._max_array}")
                    elif count == 0 and kind != ATTRIBUTE:
                        value = empty_aggregate(kind) if kind else []
                    else:
                        if len(stack) >= self._max_depth:
                            self._error(f"aggregates nested deeper than max_depth="
                                        f"{self._max_depth}")
                        if kind == ATTRIBUTE and count == 0:
                            stack.append([[{}], 1, ATTRIBUTED])
                        else:
                            stack.append([[], 2 * count if t == 37 or t == 124 else count, kind])
                        continue
                elif t == 58:  # : integer
                    value = self._int(buf, pos + 1, nl)
                    pos = nl + 2
                elif t == 43 or t == 45:  # + simple string, - error
                    text = bytes(buf[pos + 1 : nl])
                    if 13 in text or 10 in text:  # CR, LF (ints: memchr)
                        self._error("CR or LF inside a simple string or error")
                    s = text.decode("utf-8", "surrogateescape")
                    value = s if t == 43 else RespError(s)
                    pos = nl + 2
                else:  # _ null, # boolean, , double, ( big number
                    value = self._resp3(scalar_value, t, bytes(buf[pos + 1 : nl]))
                    pos = nl + 2
            elif stack:
                self._error(f"unexpected byte {bytes([t])!r} where an array element begins")
            else:  # an inline command
                scan = self._scan
                nl = buf.find(b"\n", scan if scan > pos else pos)
                if nl < 0:
                    self._scan = n
                    if n - pos > self._max_line + 1:
                        self._error(f"inline command longer than max_line_length="
                                    f"{self._max_line} ({n - pos} bytes without a newline)")
                    break
                if nl - pos > self._max_line + 1:
                    self._error(f"inline command longer than max_line_length={self._max_line} "
                                f"({nl - pos} bytes)")
                args = bytes(buf[pos:nl]).split()
                pos = nl + 1
                if not args:  # an empty line: Redis ignores it
                    self._start = self._pos = pos
                    continue
                if len(args) > self._max_array:
                    self._error(f"inline command of {len(args)} arguments over "
                                f"max_array_length={self._max_array}")
                value = args
            # Hand the value to the open aggregate, closing every aggregate it completes.
            while stack:
                top = stack[-1]
                top[0].append(value)
                top[1] -= 1
                if top[1]:
                    break
                stack.pop()
                kind = top[2]
                if not kind:
                    value = top[0]
                    continue
                value = self._resp3(close_aggregate, kind, top[0])
                if kind == ATTRIBUTE:  # the value it describes comes next
                    stack.append([[value], 1, ATTRIBUTED])
                    break
            else:
                self._start = self._pos = pos
                self._need = self._scan = 0
                return value
        self._pos = pos
        self._check_message(n)
        return NEED_DATA

    def _resp3(self, decode: Any, kind: int, data: Any) -> Any:
        try:
            return decode(kind, data)
        except ValueError as exc:
            self._error(str(exc))

    def _int(self, buf: bytearray, begin: int, end: int) -> int:
        text = buf[begin:end]
        if 0 < end - begin <= _MAX_INT_CHARS:
            if text.isdigit():
                return int(text)
            if text[0] == 45 and text[1:].isdigit():  # "-"
                return -int(text[1:])
        self._error(f"bad integer {bytes(text[:_MAX_INT_CHARS + 4])!r}")
        raise AssertionError  # unreachable: for type checkers

    def _check_message(self, size_end: int) -> None:
        size = size_end - self._start
        if size > self._max_message:
            self._error(f"message of {size} bytes or more over max_message_length="
                        f"{self._max_message}")

    def _error(self, what: str) -> None:
        raise FilterError(f"Resp: {what}")

    def _compact(self) -> None:
        start = self._start
        self._pos -= start
        self._need = max(0, self._need - start)
        self._scan = max(0, self._scan - start)
        self._fast_from = max(0, self._fast_from - start)
        Filter._compact(self)  # (not super(): a compiled cpdef method has no __class__ cell)

    def pending(self) -> bytes:
        rest = bytes(self._buf[self._start :])
        batch = self._ready
        if not batch:
            return rest
        # Messages of the batch not yet returned begin after the last one returned.
        returned = len(self._bends) - len(batch)
        index = self._bends[returned - 1] if returned else 0
        toks = self._btoks
        if not toks:  # a batch of _bulk_scan: the ends are byte offsets already
            return self._bregion[index : self._bends[-1]] + rest
        offset = sum(map(len, toks[:index])) + 2 * index
        total = sum(map(len, toks[: self._bends[-1]])) + 2 * self._bends[-1]
        return self._bregion[offset:total] + rest

    def pending_size(self) -> int:
        return len(self.pending()) if self._ready else len(self._buf) - self._start

    # -- output ------------------------------------------------------------------------------
    @property
    def protocol(self) -> int:
        """2 or 3: the RESP version ``encode`` writes (input accepts both at any time). Set it
        mid-stream, e.g. after answering ``HELLO 3``."""
        return self._protocol

    @protocol.setter
    def protocol(self, value: int) -> None:
        self._protocol = check_protocol(value)

    @property
    def client(self) -> bool:
        """True on a client: every record put is a command (an array of bulk strings)."""
        return self._client

    def use_on_client(self) -> None:
        self._client = True

    def encode(self, record: Any) -> bytes:
        if self._client:
            return encode_command(record)
        # The replies servers send most first, each from ready-made pieces (resp_encode.py).
        t = type(record)
        if t is str:
            wire = _SIMPLE.get(record)
            return simple_string(record) if wire is None else wire
        if t is bytes:
            n = len(record)
            if n < 1024:
                return b"".join((_BULK_HEADS[n], record, b"\r\n"))
            return b"$%d\r\n%b\r\n" % (n, record)
        if t is int:
            if 0 <= record < 1024:
                return _SMALL_INTS[record]
            if INT_MIN <= record <= INT_MAX:
                return b":%d\r\n" % record
        if record is None:
            return b"$-1\r\n" if self._protocol == 2 else b"_\r\n"
        if t is RespError:
            return error(record, self._protocol)
        if t is list or t is tuple:
            encode = self.encode
            # A request's arguments are bytes: those are framed inline, without a call each.
            return b"*%d\r\n" % len(record) + b"".join([
                b"$%d\r\n%b\r\n" % (len(r), r) if type(r) is bytes else encode(r)
                for r in record])
        wire = encode_other(record, self._protocol, self.encode)
        if wire is not None:
            return wire
        if isinstance(record, (bytes, bytearray, memoryview)):
            data = bytes(record)
            return b"$%d\r\n%b\r\n" % (len(data), data)
        if isinstance(record, (list, tuple, str)):
            return self.encode(base_type(record))
        raise TypeError(f"Resp.encode cannot encode {type(record).__name__}")

    def encode_many(self, records: Any) -> bytes:
        # Each record through encode() as a C call when compiled (Filter's goes through a bound
        # method per record): a server putting one read's replies at once.
        return b"".join([self.encode(r) for r in records])

    def _forget_input(self) -> None:
        # The parse state Filter._forget_input cannot reach in the compiled build (C fields).
        self._pos = self._need = self._scan = self._fast_from = 0
        self._stack = []
        self._btoks = []
        self._bends = []
        self._bregion = b""
        Filter._forget_input(self)  # (not super(): a compiled cpdef method has no __class__ cell)

    def clone(self) -> Resp:
        return Resp(self._max_bulk, self._max_array, self._max_depth, self._max_line,
                    self._max_message, self._protocol, self._client)

    def __repr__(self) -> str:
        options = ([] if self._protocol == 2 else ["protocol=3"]) + (
            ["client=True"] if self._client else [])
        return f"Resp({', '.join(options)})"


accelerate(globals(), "greensrv.filters._c_resp", requires=("greensrv.filters.base",))
