"""InputClock: when a connection's input has waited too long, and its progress (sans-IO).

It holds the times the input limits are measured from: idle time spent waiting
(``idle_timeout``), when the unfinished record began arriving (``record_timeout``,
``record_min_rate`` after ``record_grace``: ``greensrv.overload.RecordClock``), when the
connection was accepted (``record_start_timeout``), and the bytes received. Before a wait the
connection asks :meth:`InputClock.limit` how long it may wait; after a wait that timed out,
:meth:`InputClock.expired` says which limit ran out (:data:`IDLE`, :data:`RECORD`, or 0 when
none has: the get() deadline, or a timer that fired early). :meth:`InputClock.progress` is what
the server's shedder reads (``docs/overload.md``). Times are ``time.monotonic()`` values the
connection passes in, with its ``Limits`` (not kept: each field is 8 bytes of every connection):
no clock, socket or gevent import, so it is tested without either.
"""

from __future__ import annotations

from ._accelerate import accelerate
from .limits import Limits
from .overload import Progress

__all__ = ["IDLE", "RECORD", "InputClock"]

#: What :meth:`InputClock.expired` reports: idle_timeout ran out…
IDLE = 1
#: …or the record clock did (record_timeout, record_min_rate, record_start_timeout).
RECORD = 2

#: Timers may fire this early (libev counts from the loop's cached time): a limit this close
#: counts as reached.
SLACK = 1e-3


class InputClock:
    """The input deadlines of one connection, and what the shedder reads of its progress."""

    __slots__ = ("accepted_at", "bytes_in", "idle_spent", "last_recv", "partial_since",
                 "waiting_since")

    def __init__(self, now: float) -> None:
        self.accepted_at = now
        self.bytes_in = 0  # bytes received so far
        self.idle_spent = 0.0  # seconds waited for input since the last bytes came
        self.last_recv = 0.0  # when the last bytes came
        self.partial_since: float | None = None  # when the unfinished record began arriving
        self.waiting_since: float | None = None  # set while the connection waits for input

    def received(self, size: int, now: float) -> None:
        """``size`` bytes arrived at ``now``."""
        self.idle_spent = 0.0
        self.last_recv = now
        self.bytes_in += size

    def limit(self, limits: Limits, now: float, pending: int) -> float | None:
        """Seconds the connection may wait for input from ``now`` before idle_timeout or the
        record clock runs out (None: neither applies), with ``pending`` bytes of an unfinished
        record buffered; starts that record's clock when it has just begun, ends it when no
        record is unfinished."""
        left = None
        if limits.idle_timeout is not None:
            left = limits.idle_timeout - self.idle_spent
        record = limits.record_clock
        due = None
        if pending and record.active:  # _record_due, inlined: this runs at every wait
            if self.partial_since is None:
                self.partial_since = self.last_recv
            due = record.deadline(self.partial_since, pending)
        else:
            self.partial_since = None
            if record.start_timeout is not None and not self.bytes_in:
                due = self.accepted_at + record.start_timeout
        if due is not None and (left is None or due - now < left):
            left = due - now
        return left

    def _record_due(self, limits: Limits, pending: int) -> float | None:
        """When the record clock runs out: for the unfinished record, or before the first byte."""
        record = limits.record_clock
        if pending and record.active:
            assert self.partial_since is not None  # set by limit()
            return record.deadline(self.partial_since, pending)
        if record.start_timeout is not None and not self.bytes_in:
            return self.accepted_at + record.start_timeout
        return None

    def waited(self, start: float, now: float) -> None:
        """The connection waited for input from ``start`` to ``now``: idle time (the connection
        tells only when idle_timeout is set)."""
        self.idle_spent += now - start

    def expired(self, limits: Limits, now: float, pending: int) -> int:
        """After a wait that timed out (``pending`` as given to :meth:`limit` before it):
        :data:`IDLE`, :data:`RECORD`, or 0 (no limit reached)."""
        if self.idle_ran_out(limits):
            return IDLE
        due = self._record_due(limits, pending)
        if due is not None and now >= due - SLACK:
            return RECORD
        return 0

    def idle_ran_out(self, limits: Limits) -> bool:
        """Has the connection waited idle_timeout for input since its last bytes?"""
        return limits.idle_timeout is not None and self.idle_spent >= limits.idle_timeout - SLACK

    def overdue_reason(self, limits: Limits, pending: int, now: float) -> str:
        """Why the record clock ran out, for the error that ends the connection."""
        record = limits.record_clock
        if self.partial_since is None:
            return (f"sent nothing within record_start_timeout={record.start_timeout:g} s "
                    "of connecting")
        return record.overdue_reason(self.partial_since, pending, now)

    def drained(self, now: float) -> None:
        """Reading was paused by backpressure until ``now``: the client could not send
        meanwhile, so its unfinished record's clock starts again."""
        if self.partial_since is not None:
            self.partial_since = now

    def progress(self, reading: bool, pending: int) -> Progress:
        """The connection as shedding sees it (``greensrv.overload.ShedPolicy``): waiting for
        input since when (None while its handler does anything else, or input has ended), its
        unfinished record, and whether it has completed one (bytes received beyond the
        unfinished record went out as records)."""
        since = self.partial_since
        return Progress(self.accepted_at, self.waiting_since if reading else None, since,
                        pending if since is not None else 0, self.bytes_in > pending)


accelerate(globals(), "greensrv._c_input_clock")
