"""Overload policy, pure and IO-free: how long a record may take, and whom to shed when full.

Two decisions live here as plain arithmetic on monotonic seconds and byte counts, so they can be
tested without sockets and reasoned about on paper; the connection and the server feed them
numbers and act on the answers (see ``docs/limits.md``):

- :class:`RecordClock`, after Apache ``mod_reqtimeout``'s ``MinRate``: a record that has begun
  arriving may take ``grace`` seconds plus one second for every ``min_rate`` bytes received, and
  never more than ``max_time`` (the server's ``record_timeout``). A client dripping a byte a
  second is cut after about ``grace`` seconds; a slow but steady upload keeps earning time.
- :class:`ShedPolicy`: when the server is at ``concurrency`` and clients wait to be accepted,
  which connections make the least progress and are closed to make room.

Nothing here imports socket, ssl or gevent (a test walks the imports).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .defaults import (
    DEFAULT_RECORD_GRACE,
    DEFAULT_RECORD_MIN_RATE,
    DEFAULT_RECORD_TIMEOUT,
    DEFAULT_SHED_MIN_AGE,
    DEFAULT_SHED_PROVEN_IDLE,
)

__all__ = ["IDLE", "IDLE_PROVEN", "SLOW_RECORD", "Progress", "RecordClock", "ShedPolicy", "Victim",
           "describe"]

#: Why a connection was chosen: it has sent nothing since it was accepted.
IDLE = "idle"
#: Why a connection was chosen: its unfinished record arrives slower than the minimum rate.
SLOW_RECORD = "slow record"
#: Why a connection was chosen: it completed records before, and has been idle between records
#: longer than ``ShedPolicy.proven_idle`` while no unproven connection qualified.
IDLE_PROVEN = "idle proven"

#: The order in which reasons are taken (lower first): what a connection has proven about
#: itself counts before how long it stalled.
_RANK = {IDLE: 0, SLOW_RECORD: 1}
_RANK_PROVEN = {SLOW_RECORD: 2, IDLE_PROVEN: 3}


@dataclass(frozen=True)
class RecordClock:
    """When an unfinished record must be complete (``None`` fields turn that limit off).

    ``max_time`` is the hard ceiling counted from the record's first byte (``record_timeout``);
    ``min_rate`` with ``grace`` is the rate rule; ``start_timeout``, when set, bounds how long a
    new connection may stay silent before its first byte (between records ``idle_timeout``
    applies instead).
    """

    max_time: float | None = DEFAULT_RECORD_TIMEOUT
    min_rate: float | None = DEFAULT_RECORD_MIN_RATE
    grace: float = DEFAULT_RECORD_GRACE
    start_timeout: float | None = None

    @property
    def active(self) -> bool:
        """True when an unfinished record has any deadline at all."""
        return self.max_time is not None or self.min_rate is not None

    def allowed(self, received: int) -> float | None:
        """Seconds a record may take in all, having received ``received`` bytes of it so far."""
        allowed = None
        if self.min_rate is not None:
            allowed = self.grace + received / self.min_rate
        if self.max_time is not None and (allowed is None or self.max_time < allowed):
            allowed = self.max_time
        return allowed

    def deadline(self, started: float, received: int) -> float | None:
        """The moment the record begun at ``started`` must be complete, or None (no limit)."""
        allowed = self.allowed(received)
        return None if allowed is None else started + allowed

    def overdue_reason(self, started: float, received: int, now: float) -> str:
        """A sentence for the client error once the deadline has passed: which limit, and why."""
        elapsed = now - started
        if self.max_time is not None and self.allowed(received) == self.max_time:
            return (f"took more than record_timeout={self.max_time:g} s to send one record "
                    f"({received} bytes of it received)")
        rate = received / elapsed if elapsed > 0 else 0.0
        return (f"sent one record slower than record_min_rate={self.min_rate:g} bytes/s: "
                f"{received} bytes in {elapsed:.1f} s ({rate:.1f} bytes/s, after "
                f"record_grace={self.grace:g} s)")


@dataclass(frozen=True)
class Progress:
    """What shedding needs to know of one connection (monotonic seconds, bytes).

    ``waiting_since`` is when it began waiting for input, None while its handler does anything
    else (work, a database call, waiting for its output to drain): such a connection is never
    shed. ``record_started`` is the first byte of its unfinished record, None between records.
    ``proven``: it has completed at least one record (its input filter has taken bytes out as
    records), the evidence that it is a real client.
    """

    accepted: float
    waiting_since: float | None
    record_started: float | None = None
    record_bytes: int = 0
    proven: bool = False


K = TypeVar("K")


@dataclass(frozen=True)
class Victim(Generic[K]):
    """One connection chosen by :meth:`ShedPolicy.choose`, with why and since when."""

    key: K
    reason: str  #: IDLE or SLOW_RECORD
    stalled_since: float  #: the moment it stopped making progress


@dataclass(frozen=True)
class ShedPolicy:
    """Whom to close when full and clients wait: unproven connections first, oldest stall first.

    A connection qualifies only while it waits for input (never while its handler does anything
    else), and then:

    - unproven (no record completed yet) and silent since it was accepted, for ``min_age``
      seconds (``IDLE``);
    - with an unfinished record arriving slower than ``min_rate`` counted from its first byte
      (``SLOW_RECORD``; no grace: at capacity the grace is what waiting clients pay for; a
      record of ``n`` bytes is spared ``n / min_rate`` seconds, its own evidence);
    - proven and idle between records for ``proven_idle`` seconds (``IDLE_PROVEN``), and only
      while no unproven connection qualifies.

    Rank: unproven silent, then unproven slow records, then proven slow records, then proven
    idle; within a rank, the one that stopped making progress first (an idle one since it began
    waiting, a slow record since its first byte); ties go to the connection accepted first.
    """

    min_age: float = DEFAULT_SHED_MIN_AGE
    min_rate: float = DEFAULT_RECORD_MIN_RATE
    proven_idle: float = DEFAULT_SHED_PROVEN_IDLE

    def judge(self, progress: Progress, now: float) -> tuple[str, float] | None:
        """``(reason, stalled_since)`` when this connection may be shed now, else None (a proven
        idle one is judged on its own: ``choose`` takes it only when no unproven qualifies)."""
        waiting = progress.waiting_since
        if waiting is None:
            return None
        started = progress.record_started
        if started is None:
            if progress.proven:
                return (IDLE_PROVEN, waiting) if now - waiting >= self.proven_idle else None
            return (IDLE, waiting) if now - waiting >= self.min_age else None
        if progress.record_bytes < (now - started) * self.min_rate:
            return SLOW_RECORD, started
        return None  # a record arriving at a good rate is progress

    def choose(self, candidates: Iterable[tuple[K, Progress]], now: float,
               n: int) -> list[Victim[K]]:
        """At most ``n`` victims, in rank order (see the class docstring)."""
        if n <= 0:
            return []
        ranked = []
        unproven = False
        for order, (key, progress) in enumerate(candidates):
            verdict = self.judge(progress, now)
            if verdict is not None:
                reason, since = verdict
                rank = (_RANK_PROVEN if progress.proven else _RANK)[reason]
                unproven = unproven or rank < 2
                ranked.append((rank, since, progress.accepted, order, reason, key))
        if unproven:  # a proven idle connection goes only when no unproven one qualifies
            ranked = [entry for entry in ranked if entry[0] != 3]
        return [Victim(key, reason, since)
                for _, since, _, _, reason, key in heapq.nsmallest(n, ranked)]

    def next_eligible(self, candidates: Iterable[Progress], now: float) -> float | None:
        """Seconds until one of these may qualify (idle not yet long enough, or a record not yet
        behind its rate), so the caller knows when to look again; None when none will."""
        soonest = None
        for progress in candidates:
            waiting, started = progress.waiting_since, progress.record_started
            if waiting is None:
                continue  # busy in its handler: waiting for it to qualify is pointless
            if started is None:
                when = waiting + (self.proven_idle if progress.proven else self.min_age)
            else:
                when = started + progress.record_bytes / self.min_rate
            if when <= now:
                continue  # qualifies already: waiting changes nothing
            if soonest is None or when - now < soonest:
                soonest = when - now
        return soonest


def describe(victim: Victim[K], policy: ShedPolicy) -> str:
    """The client error's message for a shed connection: the same text for every connection
    shed for the same reason, so the default error log can count repeats instead of logging
    thousands of lines (the figures are on the exception's attributes)."""
    if victim.reason == SLOW_RECORD:
        why = (f"its unfinished record arrives slower than {policy.min_rate:g} bytes/s "
               "(record_min_rate)")
    elif victim.reason == IDLE_PROVEN:
        why = (f"it was idle between records for more than {policy.proven_idle:g} s and no "
               "connection that never completed a record could go instead")
    else:
        why = "it has sent nothing since it was accepted"
    return f"shed at capacity to make room for clients waiting to connect: {why}"
