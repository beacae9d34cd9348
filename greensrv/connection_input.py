"""The input side of a Connection: reading on demand, end of input, the input clocks.

``Connection`` derives from ``InputSide`` through ``OutputSide`` (no state of its own: every
field is ``ConnectionFields``'), so ``get()`` past its fast path costs no extra lookups.
``connection.py`` keeps the socket, the watchers, ``_wake`` and the public methods; this side
parks the connection's greenlet (``_wait``, used by the output side too) and takes the private
steps ``get()`` takes when no record is parsed yet:
read one chunk (``_read_more``/``_recv``), or wait for input under the ``get()`` deadline,
``idle_timeout`` and the record clock (``_wait_readable``: ``record_timeout``,
``record_min_rate`` after ``record_grace``, ``record_start_timeout``; ``greensrv.overload``), or
for output to drain below ``low_mark`` (``_wait_for_drain``). ``_overload_progress`` and ``_shed``
are what the server's shedder asks of a connection at capacity (``docs/overload.md``).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from gevent import getcurrent

from ._accelerate import accelerate
from .connection_fields import READY, RECV_SIZE, TIMEOUT, WAKE, ConnectionFields
from .connection_state import FIN_SENT, PEER_CLOSED, READING, STOPPED
from .errors import ConnectionShedError, RecordTimeoutError
from .filters.base import NEED_DATA
from .overload import Progress
from .transport import PEER_GONE_ERRNOS

__all__ = ["InputSide", "overload_progress", "shed"]

_monotonic = time.monotonic


class InputSide(ConnectionFields):
    """Connection's private input steps (see the module docstring)."""

    __slots__ = ()

    def _wait(self, watcher: Any, timeout: float | None) -> str:
        """Park this greenlet until the watcher fires, the timeout passes or _wake() is called.

        Every wait of the connection (input, a drain, a flush) is this one C call in the
        compiled build: one small frame on the stack a parked greenlet saves."""
        glet = getcurrent()
        hub = self._hub
        if glet is hub:
            raise RuntimeError("Connection I/O must not be called from the gevent hub")
        if self._waiting is not None:
            raise RuntimeError(f"{self!r} is already being read by another greenlet")
        self._waiting = glet
        timer = None
        if watcher is not None:
            watcher.start(glet.switch, READY)
        if timeout is not None:
            timer = self._loop.timer(max(timeout, 0.0))
            timer.start(glet.switch, TIMEOUT)
        try:
            result: str = hub.switch()
        finally:
            self._waiting = None
            self._read_wait_since = None  # set by _wait_readable for the shedder
            if watcher is not None:
                watcher.stop()
            if timer is not None:
                timer.close()
        return result

    def _get_slow(self, timeout: float | None, parsed: bool = False) -> Any:
        """get() past its fast path; ``parsed``: the filter was just asked and has no record."""
        deadline = None if timeout is None else _monotonic() + timeout
        just_read = False
        while True:
            if not parsed:
                # Backpressure: while output is above high_mark, no record is handed out (so a
                # handler cannot turn records already parsed into unbounded output) and
                # nothing is read. Once input has ended, parsed records are still handed out,
                # to be answered.
                if self._queued > self._high:
                    state = self._state
                    while self._queued > self._low and not state.input_stopped:
                        self._wait_for_drain(deadline)
                record = self._in.next_record()
                if record is not NEED_DATA:
                    if just_read:
                        # A record completes only right after a read: the one place where the
                        # unfinished record that record_timeout watches can end.
                        self._partial_since = None
                    return record
            parsed = False
            if self._eof_records:
                return self._eof_records.popleft()
            if self._state.input is not READING:
                raise EOFError("no more input from the server" if self._hooks.client_side
                               else "no more input from this client")
            self._read_more(deadline)
            just_read = True

    def _read_more(self, deadline: float | None) -> None:
        """Read one chunk into the input filter, or end input; waits as needed."""
        while True:
            if self._state.input is not READING:
                return
            transport = self._transport
            # Fairness: even when a read filled its buffer and more is surely waiting, the next
            # read goes through the hub's poll, so a client flooding input gets one RECV_SIZE
            # read per loop iteration, like every other ready client. Only bytes TLS already
            # decrypted (invisible to the poll) are read without waiting, and a new
            # connection's first read is tried at once: clients usually send right after
            # connecting, so their first request is often there already.
            if (self._first_read or transport.pending()) and self._recv(transport) is not None:
                self._first_read = False
                return
            self._first_read = False
            if self._flush_cb is not None:
                # The handler put records and now waits for input: the burst is over, so send
                # it from here rather than from a hub callback after the switch.
                self._flush()
            reason = self._wait_readable(deadline)
            if reason is READY and self._recv(transport) is not None:
                return

    def _recv(self, transport: Any) -> bytes | None:
        """One non-blocking read; None when nothing was there. Ends input at EOF or error."""
        try:
            data = transport.recv(RECV_SIZE)
        except OSError as exc:
            if exc.errno not in PEER_GONE_ERRNOS:
                self.error = exc
            self._end_of_input(peer_closed=False)
            return b""
        if data is None:
            return None
        if not data:
            self._end_of_input(peer_closed=True)
            return data
        self._idle_spent = 0.0
        self._last_recv = _monotonic()
        self._bytes_in += len(data)
        self._in.receive(data)
        return data

    def _end_of_input(self, peer_closed: bool) -> None:
        state = self._state
        if not peer_closed:  # a read error
            if state.input is READING or state.input is PEER_CLOSED:
                state.stop_input()
        elif state.input is READING or state.input is STOPPED:
            state.peer_closed()
            # The peer's last record may lack its terminator; the filter decides.
            records = self._in.feed_eof()
            if records:
                self._eof_records = deque(records)
            if state.output is FIN_SENT:
                self.close()  # both directions have ended (write_eof): nothing is left to do

    def _wait_readable(self, deadline: float | None) -> str:
        """Wait for input, honouring the get() deadline, idle_timeout and record_timeout."""
        limits = self._limits
        now = _monotonic()
        timeout = None if deadline is None else deadline - now
        idle_timeout = limits.idle_timeout
        idle_left = None
        if idle_timeout is not None:
            idle_left = idle_timeout - self._idle_spent
            if timeout is None or idle_left < timeout:
                timeout = idle_left
        clock = limits.record_clock
        record_left = None
        pending = self._in.pending_size()
        if pending and clock.active:
            if self._partial_since is None:
                self._partial_since = self._last_recv
            record_deadline = clock.deadline(self._partial_since, pending)
            if record_deadline is not None:
                record_left = record_deadline - now
        else:
            self._partial_since = None
            if clock.start_timeout is not None and not self._bytes_in:
                record_left = self._accepted_at + clock.start_timeout - now
        if record_left is not None and (timeout is None or record_left < timeout):
            timeout = record_left
        if timeout is not None and timeout <= 0:
            reason = TIMEOUT
        else:
            watcher = self._write_watcher() if self._transport.wants_write else self._rw
            self._read_wait_since = now  # _wait sets it back to None
            reason = self._wait(watcher, timeout)
            if idle_left is not None:
                self._idle_spent += _monotonic() - now
        if reason is not TIMEOUT:
            return reason
        if idle_timeout is not None and self._idle_spent >= idle_timeout - 1e-3:
            self._hooks.count("closed_idle")
            self._stop_input()
            return WAKE
        if record_left is not None and _monotonic() >= now + record_left - 1e-3:
            self._record_overdue(pending)
            return WAKE
        if deadline is not None and _monotonic() >= deadline - 1e-3:
            raise TimeoutError("no record within the timeout")
        # libev timers count from the loop's cached time, so one armed late in a busy loop
        # iteration can fire early: no limit is reached yet, so wait again for the rest.
        return WAKE

    def _record_overdue(self, pending: int) -> None:
        """The record clock ran out (record_timeout, record_min_rate or record_start_timeout)."""
        clock = self._limits.record_clock
        self._hooks.count("closed_record_timeout")
        if self.error is None:
            if self._partial_since is None:
                why = (f"sent nothing within record_start_timeout={clock.start_timeout:g} s "
                       "of connecting")
            else:
                why = clock.overdue_reason(self._partial_since, pending, _monotonic())
            self.error = RecordTimeoutError(f"peer {self.remote_address!r} {why}")
        self._stop_input()

    def _overload_progress(self) -> Progress:
        """This connection as shedding sees it (``greensrv.overload.ShedPolicy``): waiting for
        input since when (None while its handler does anything else), its unfinished record,
        and whether it has completed one (bytes received beyond the unfinished record went out
        as records). For the server's shedder; not part of the application's API."""
        since = self._partial_since
        waiting = self._read_wait_since if self._state.input is READING else None
        pending = self._in.pending_size()
        return Progress(self._accepted_at, waiting, since, pending if since is not None else 0,
                        self._bytes_in > pending)

    def _shed(self, error: ConnectionShedError) -> None:
        """Close now to make room at capacity (the server's shedder calls it): the handler's
        get() sees EOF, and ``error`` reaches client_error once the handler has ended."""
        if self.error is None:
            self.error = error
        self.close()

    def _wait_for_drain(self, deadline: float | None) -> None:
        """Reading is paused by backpressure: wait until output drains below low_mark."""
        if deadline is None:
            self._wait(None, None)
        else:
            timeout = deadline - _monotonic()
            if timeout <= 0 or (self._wait(None, timeout) is TIMEOUT
                                and _monotonic() >= deadline - 1e-3):
                raise TimeoutError("no record within the timeout "
                                   "(reading paused by backpressure)")
        if self._partial_since is not None:  # the client could not send while we did not read
            self._partial_since = _monotonic()


# -- what the server's shedder calls on a connection (functions: not the application's API) ---

def overload_progress(conn: InputSide) -> Progress:
    """``conn`` as shedding sees it (``greensrv.overload.ShedPolicy``)."""
    return conn._overload_progress()


def shed(conn: InputSide, error: ConnectionShedError) -> None:
    """Close ``conn`` now to make room at capacity; ``error`` reaches client_error."""
    conn._shed(error)


accelerate(globals(), "greensrv._c_connection_input", requires=("greensrv.connection_fields",))
