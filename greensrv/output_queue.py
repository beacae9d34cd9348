"""OutputQueue: the bytes a connection has yet to send, and the watermark crossings (sans-IO).

It holds encoded output and, when the output filter allows it, ASCII text records not yet encoded
(``Filter.ascii_terminator``: their wire form is the record plus a terminator, so a whole burst
is encoded with one ``join`` when it is sent, and queuing one is a list append). It counts the
bytes exactly, and every method that changes the count returns the crossings it caused as flags
(:data:`ROSE_ABOVE_HIGH`, :data:`OVER_LIMIT`, :data:`FELL_TO_LOW`, :data:`EMPTIED`); the
connection acts on them (pauses reading, runs ``client_high``/``client_low``/``client_flushed``,
shuts a slow reader down). No socket, ssl or gevent import: it is tested without a socket.

:class:`~greensrv.Connection` owns one. The counts it reads on the per-record path of ``put()``
(``lazy``, ``lit_len``, ``queued``, ``busy_mark``, ``high``) are public fields: in the compiled
build C fields of the queue, read through one typed pointer.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ._accelerate import accelerate
from .filters.base import Filter
from .limits import Limits

__all__ = ["EMPTIED", "FELL_TO_LOW", "INLINE_SEND_THRESHOLD", "OVER_LIMIT", "ROSE_ABOVE_HIGH",
           "OutputQueue"]

#: put() tries to send at once when this much output is queued, so a handler that puts a lot
#: without yielding still streams instead of building a large buffer.
INLINE_SEND_THRESHOLD = 65536

#: Crossing flags, combined with ``|``: queued output rose past high_mark…
ROSE_ABOVE_HIGH = 1
#: …passed output_limit (the peer does not read: shut it down)…
OVER_LIMIT = 2
#: …fell from above low_mark to low_mark or below (reading may resume)…
FELL_TO_LOW = 4
#: …and the queue became empty after holding bytes (everything was sent).
EMPTIED = 8


class OutputQueue:
    """Queued output of one connection: encoded bytes, then lazily encoded ASCII text.

    ``queued`` is exact to the byte at all times: the encoded bytes plus the wire size of the
    text records not yet encoded. Text records always follow the encoded bytes on the wire.
    """

    __slots__ = ("_lit", "_out", "_outbuf", "_output_limit", "busy_mark", "high", "lazy",
                 "lit_len", "low", "queued")

    def __init__(self, out_filter: Filter, limits: Limits) -> None:
        self._out = out_filter
        self._outbuf = bytearray()  # encoded output not yet sent
        # ASCII str records put but not yet encoded (None when the output filter has no
        # ascii_terminator, and once the output has ended); they follow everything in _outbuf.
        self.lazy: list[str] | None = None
        self._lit = ""
        self.lit_len = 0
        self._use_output_filter(out_filter)
        self.queued = 0  # bytes of output queued: _outbuf plus the wire size of lazy
        # Clamped: no queue outgrows sys.maxsize, and the compiled build keeps them in C integers.
        self.high = min(limits.high_mark, sys.maxsize)
        self.low = min(limits.low_mark, sys.maxsize)
        self._output_limit = min(limits.output_limit, sys.maxsize)
        # The per-record path leaves its fast lane past this: the high mark must be checked, or
        # enough is queued to be worth sending at once.
        # (min(high + 1, threshold), written so that high at sys.maxsize cannot overflow.)
        self.busy_mark = min(self.high, INLINE_SEND_THRESHOLD - 1) + 1

    @property
    def buffered(self) -> int:
        """Bytes queued for output and not yet taken by the kernel."""
        return self.queued

    @property
    def output_filter(self) -> Filter:
        return self._out

    # -- queuing -------------------------------------------------------------------------------
    def queue_text(self, record: str) -> int:
        """Queue one ASCII ``str`` record for the lazy path; returns the crossings.

        Only when ``lazy`` is not None (the connection inlines this for speed).
        """
        lazy = self.lazy
        assert lazy is not None
        lazy.append(record)
        size = len(record) + self.lit_len
        queued = self.queued = self.queued + size
        return self.crossed_after_put(queued - size) if queued >= self.busy_mark else 0

    def queue_records(self, record: Any, more: tuple[Any, ...]) -> int:
        """Encode ``record`` (and ``more``) through the output filter and queue the bytes.

        Returns the queue size before, for :meth:`crossed_after_put`. The filter's errors
        (``TypeError``/``ValueError``) propagate with nothing queued.
        """
        self.encode_text()
        out = self._out
        data = out.encode_many((record, *more)) if more else out.encode(record)
        self._outbuf += data
        before = self.queued
        self.queued = before + len(data)
        return before

    def crossed_after_put(self, before: int) -> int:
        """The crossings of a put that grew the queue from ``before`` bytes to ``queued``."""
        self.encode_text()
        after = self.queued
        crossed = 0
        if after > self.high >= before:
            crossed = ROSE_ABOVE_HIGH
        if after > self._output_limit:
            crossed |= OVER_LIMIT
        return crossed

    def encode_text(self) -> None:
        """Encode the queued text records into the byte buffer, in one join."""
        lazy = self.lazy
        if lazy:
            lazy.append("")  # so the join ends with a terminator too
            self._outbuf += self._lit.join(lazy).encode("ascii")
            lazy.clear()

    # -- sending -------------------------------------------------------------------------------
    def outgoing(self) -> bytearray:
        """The bytes to send now: everything queued, text encoded (what a send would pass)."""
        self.encode_text()
        return self._outbuf

    def send_queued(self, send: Callable[[bytearray], int]) -> int:
        """Offer everything queued to ``send`` (it returns how many bytes it took, and does no
        waiting); remove what it took and return the crossings. The queue does no I/O itself:
        the connection passes its transport's non-blocking ``send``, a test a plain function.
        An exception from ``send`` leaves every byte queued."""
        lazy = self.lazy
        if lazy:  # encode_text, inlined: this runs once per flush
            lazy.append("")
            self._outbuf += self._lit.join(lazy).encode("ascii")
            lazy.clear()
        buf = self._outbuf
        before = len(buf)
        if before:
            n = send(buf)
            if n:
                del buf[:n]
        after = self.queued = len(buf)
        crossed = FELL_TO_LOW if before > self.low >= after else 0
        if before and not after:
            crossed |= EMPTIED
        return crossed

    # -- filters and the end -------------------------------------------------------------------
    def switch_output_filter(self, new_filter: Filter, more_to_come: bool) -> None:
        """Encode records queued from now on with ``new_filter``; queued ones keep the old one.

        ``more_to_come``: False once the output has ended (closing), so the lazy text path
        stays off and the connection keeps dropping what is put.
        """
        self.encode_text()
        self._out = new_filter
        if more_to_come:
            self._use_output_filter(new_filter)

    def _use_output_filter(self, out_filter: Filter) -> None:
        lit = out_filter.ascii_terminator()
        if lit is None or not lit.isascii():
            self.lazy = None
        else:
            self.lazy = []
            self._lit = lit
            self.lit_len = len(lit)

    def end_output(self) -> None:
        """Closing gracefully: what is queued is still sent; records put from now on are not."""
        self.encode_text()
        self.lazy = None

    def discard(self) -> None:
        """Closing at once, or the peer is gone: drop everything queued and end the output."""
        self._outbuf.clear()
        self.lazy = None
        self.queued = 0


accelerate(globals(), "greensrv._c_output_queue", requires=("greensrv.filters.base",))
