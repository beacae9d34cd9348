"""The output side of a Connection: sending, the write watcher, output events, the drain.

``Connection`` derives from ``OutputSide``, which derives from ``InputSide`` (one chain of
classes with no state of their own: every field is ``ConnectionFields``'; a single chain so the
compiled build can make each a C type, docs/compiled.md). The queue itself (bytes, lazy text,
watermark crossings) is the sans-IO ``OutputQueue``; these are the steps that act on it: send
what the socket takes (``_flush``), let the write watcher send the rest, run
``client_flushed``/``client_high``/``client_low`` in the connection's own greenlet
(``_output_event``), shut a slow reader down (``_too_slow``), read and discard input while
closing (``_discard_input``, ``_drain``), and end a ``shutdown()`` that nobody finishes
(``_start_linger``).
"""

from __future__ import annotations

import time
from collections import deque

import gevent

from ._accelerate import accelerate
from .connection_fields import READY, RECV_SIZE
from .connection_input import InputSide
from .connection_state import CLOSED, CLOSING, DONE, FIN_SENT, OPEN, PEER_CLOSED, READING, STOPPED
from .errors import SlowClientError
from .output_queue import EMPTIED, FELL_TO_LOW, OVER_LIMIT, ROSE_ABOVE_HIGH
from .transport import PEER_GONE_ERRNOS

__all__ = ["OutputSide"]

_monotonic = time.monotonic


class OutputSide(InputSide):
    """Connection's private output steps (see the module docstring)."""

    __slots__ = ()

    def _schedule_flush(self) -> None:
        """Send this burst's output once the putting greenlet yields (or waits for input)."""
        self._flush_cb = self._loop.run_callback(self._flush)

    def _put_a_lot(self, before: int) -> None:
        """put() past min(high_mark, INLINE_SEND_THRESHOLD): watermark, limit, inline send."""
        crossed = self._crossed_after_put(before)
        if crossed & ROSE_ABOVE_HIGH:
            self._output_event("high")
        if crossed & OVER_LIMIT:
            self._too_slow(self._queued)
        elif not self._writing:
            self._flush()

    def _too_slow(self, queued: int) -> None:
        self._hooks.count("closed_output_limit")
        self.error = SlowClientError(
            f"peer {self.remote_address!r} did not read its output: {queued} bytes queued, "
            f"past output_limit={self._limits.output_limit}")
        self.close()

    def _flush(self) -> None:
        """Send as much queued output as the socket takes; runs in the hub or inline."""
        if self._flush_cb is not None:  # called before the scheduled callback ran: cancel it
            self._flush_cb.stop()
            self._flush_cb = None
        if self._state.output is CLOSED or self._transport is None:
            return
        before = self._queued
        try:
            crossed = self._send_queued(self._transport.send)
        except OSError as exc:
            self._write_failed(exc)
            return
        self._bytes_out += before - self._queued
        if crossed & FELL_TO_LOW:
            self._drained_below_low()
        if self._queued:
            self._start_writing()
            return
        if self._writing:  # _stop_writing, inlined: this runs once per flush
            self._writing = False
            self._ww.stop()
        if self._flush_event is not None:
            self._flush_event.set()
        if crossed & EMPTIED and "flushed" in self._hooks.output_callbacks:
            self._output_event("flushed")
        if self._state.output is CLOSING:
            self._send_fin()

    def _start_writing(self) -> None:
        """Let the write watcher send the rest as the socket becomes writable."""
        if not self._writing:
            self._writing = True
            self._write_watcher().start(self._flush)

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self._ww.stop()

    def _drained_below_low(self) -> None:
        if self._waiting is not None:
            self._loop.run_callback(self._wake)
        self._output_event("low")

    def _write_failed(self, exc: OSError) -> None:
        """The peer cannot take output any more: drop it and end the connection's input."""
        if exc.errno not in PEER_GONE_ERRNOS and self.error is None:
            self.error = exc
        self._discard()
        if self._state.output is OPEN:
            self._state.begin_closing()
        self._stop_writing()
        if self._flush_event is not None:
            self._flush_event.set()
        self._stop_input()

    def _send_fin(self) -> None:
        state = self._state
        state.fin_sent()
        self._transport.shutdown_write()
        if state.input is PEER_CLOSED or state.input is DONE:
            self.close()  # the peer's EOF came first: both directions have ended
        elif self._linger is not None:
            self._start_linger(self._limits.drain_timeout)  # the drain after FIN begins

    def _start_linger(self, seconds: float) -> None:
        """shutdown() on its own: close by ourselves within ``seconds``, reading and dropping
        input meanwhile so that the peer's EOF closes at once (a handler or a client may never
        call get() again, and a client-side connection has nobody to finish it)."""
        if self._state.output is CLOSED:
            return
        if self._linger is not None:
            self._linger.close()
        self._linger = self._loop.timer(seconds)
        self._linger.start(self.close)
        if self._waiting is None:  # else a reader is parked on _rw: it leaves at once, EOF
            self._rw.start(self._discard_input)

    def _output_event(self, kind: str) -> None:
        """Run client_flushed/high/low in this connection's own greenlet, never in the hub."""
        callback = self._hooks.output_callbacks.get(kind)
        if callback is None or self._state.output is CLOSED:
            return
        if self._events is None:
            self._events = deque()
        self._events.append(kind)
        if self._event_glet is None:
            self._event_glet = gevent.spawn(self._run_output_events)

    def _run_output_events(self) -> None:
        hooks = self._hooks
        callbacks = hooks.output_callbacks
        events = self._events
        assert events is not None
        try:
            state = self._state
            while events and state.output is not CLOSED:
                kind = events.popleft()
                if kind == "flushed":
                    # Whatever client_flushed puts waits for the socket to be writable (an I/O
                    # poll) rather than a hub callback, so a fast reader cannot keep this
                    # connection's output loop from yielding to other clients and signals.
                    self._start_writing()
                try:
                    callbacks[kind](self)
                except Exception as exc:
                    hooks.report_error(self, exc)
        finally:
            self._event_glet = None

    def _discard_input(self) -> None:
        """Hub callback while a closing connection flushes: read and drop what arrives."""
        try:
            data = self._transport.recv(RECV_SIZE)
        except OSError:
            data = b""
        if data is None:
            return
        self._discarded += len(data)
        state = self._state
        if not data and (state.input is READING or state.input is STOPPED):
            state.peer_closed()
            if state.output is FIN_SENT:
                self.close()  # shutdown() and the peer's EOF: both directions have ended
                return
        if not data or self._discarded >= self._limits.drain_limit:
            self._rw.stop()

    def _drain(self, until: float) -> None:
        """Read and discard what the peer still sends after FIN, for a bounded time."""
        transport = self._transport
        drain_limit = self._limits.drain_limit
        state = self._state
        while (state.output is not CLOSED and self._discarded < drain_limit
               and (state.input is READING or state.input is STOPPED)):
            try:
                data = transport.recv(RECV_SIZE)
            except OSError:
                return
            if data is None:
                timeout = until - _monotonic()
                if timeout <= 0 or self._wait(self._rw, timeout) is not READY:
                    return
                continue
            if not data:
                return
            self._discarded += len(data)


accelerate(globals(), "greensrv._c_connection_output", requires=("greensrv.connection_input",))
