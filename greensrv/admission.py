"""Admission: who may come in, and when the listeners accept.

One object owns every rule that decides whether a client is let in: the ``concurrency`` limit
(counted from accept to the end of the client's greenlet: :attr:`Admission.clients`), pausing
the listeners at it and resuming them when a client ends (``capacity_freed``), the per-IP counts
of ``max_connections_per_ip``, arming the shedder while clients wait, and the stop (from which
on every client is refused). The per-client life asks it; the server tells it what happens
(the listeners opened, the limit changed, a stop began). Nothing else writes these fields.

Cost: with ``concurrency`` unlimited the listeners' check before each accept is a C call that
always answers "not full", and a client's end calls nothing; the limit's work is done only
while one is set.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .error_log import PER_IP_REFUSAL, client_log
from .overload import ShedPolicy
from .shedding import Shedder, ShedderOwner
from .statistics import Counters

__all__ = ["Admission", "Pausable"]

#: A listener's full() while concurrency is unlimited: always False, and a C call (listeners
#: ask before every accept, so a Python function would cost a frame per client).
_never_full: Callable[[], bool] = itertools.repeat(False).__next__


class Pausable(Protocol):
    """What admission needs of a listener (``listeners.Listener``)."""

    def set_full_check(self, full: Callable[[], bool]) -> None:
        """Call ``full`` before each accept from now on."""

    def stop_accepting(self) -> None:
        """Stop watching the socket; clients wait in the kernel's backlog."""

    def resume(self) -> None:
        """Watch the socket again (unless stopped or backing off)."""


class Admission:
    """The limit, the pause, the per-IP counts and the stop of one server; see the module.

    ``clients`` holds each client's greenlet from accept until it ends (the per-client life
    adds and removes them): exactly what counts toward ``concurrency``. ``stopping`` and
    ``grace_deadline`` (the end of a running stop's grace, None until a stop) and
    ``capacity_freed`` (called as each client ends while accepting is paused at the limit, None
    otherwise) are read by the per-client life and written only here.
    """

    def __init__(self, concurrency: int, max_per_ip: int | None, counters: Counters,
                 shed_policy: ShedPolicy | None = None,
                 shed_owner: ShedderOwner | None = None, name: str = "greensrv") -> None:
        self.name = name  #: the server's, for the log
        self.concurrency = concurrency
        self.max_per_ip = max_per_ip
        self.counters = counters
        self.clients: set[Any] = set()
        self.stopping = False
        self.grace_deadline: float | None = None
        self.capacity_freed: Callable[[], None] | None = None
        self._per_ip: dict[str, int] = {}
        self._listeners: list[Pausable] = []
        self._shedder: Shedder | None = None
        if shed_policy is not None and shed_owner is not None:
            self._shedder = Shedder(shed_owner, shed_policy, self.at_capacity)
        #: The listeners' check before each accept (see :meth:`listener_full`).
        self.full_check: Callable[[], bool] = _never_full
        self._pick_full_check()

    # -- what the per-client life asks ----------------------------------------------------------
    def claim_ip(self, ip: str) -> bool:
        """Count one more connection from ``ip``; False (counted as refused) past the cap."""
        assert self.max_per_ip is not None
        n = self._per_ip.get(ip, 0)
        if n >= self.max_per_ip:
            self.counters.refused_per_ip += 1
            client_log.event(PER_IP_REFUSAL, ip, logging.INFO, "%s: refused %s: "
                             "max_connections_per_ip=%d reached", self.name, ip, n)
            return False
        self._per_ip[ip] = n + 1
        return True

    def release_ip(self, ip: str) -> None:
        """One connection from ``ip`` ended (it was claimed)."""
        n = self._per_ip[ip] - 1
        if n:
            self._per_ip[ip] = n
        else:
            del self._per_ip[ip]

    def per_ip(self) -> dict[str, int]:
        """Live connections by client IP (counted only under ``max_connections_per_ip``)."""
        return dict(self._per_ip)

    # -- the limit ------------------------------------------------------------------------------
    def full(self) -> bool:
        """True while no client may be accepted."""
        limit = self.concurrency
        return self.stopping or (limit >= 0 and len(self.clients) >= limit)

    def free(self) -> int | None:
        """Slots left under the limit; None when unlimited."""
        limit = self.concurrency
        return None if limit < 0 else max(limit - len(self.clients), 0)

    def at_capacity(self) -> int | None:
        """The shedder's question: the concurrency limit while full at it and not stopping."""
        limit = self.concurrency
        if self.stopping or limit <= 0 or len(self.clients) < limit:
            return None
        return limit

    def listener_full(self) -> bool:
        """A listener's check before each accept under a limit. When full, the listener stops
        watching its socket, so each client's end must now ask whether accepting may resume
        (``capacity_freed``); and clients wait, so the shedder is armed."""
        if not self.full():
            return False
        self.capacity_freed = self._capacity_freed
        if self._shedder is not None and self.concurrency > 0:
            self._shedder.arm()
        return True

    def _capacity_freed(self) -> None:
        """A client ended while accepting was paused at the limit."""
        if not self.stopping:
            self.update()

    def _pick_full_check(self) -> None:
        """Never full while unlimited (a stop closes the listeners, and a client accepted as it
        begins is refused), so an unlimited server pays no call for it per accept."""
        self.full_check = _never_full if self.concurrency < 0 else self.listener_full
        for listener in self._listeners:
            listener.set_full_check(self.full_check)

    # -- what the server tells it ---------------------------------------------------------------
    def attach(self, listeners: Iterable[Pausable]) -> None:
        """The server's listeners, before they start; :meth:`update` once they have."""
        self._listeners = list(listeners)
        self._pick_full_check()

    def set_concurrency(self, n: int) -> None:
        """A new limit (checked by the caller): pause or resume accordingly."""
        self.concurrency = n
        self._pick_full_check()
        self.update()

    def update(self) -> None:
        """Pause or resume the listeners and the shedder to match the limit now."""
        full = self.full()
        # While paused, each client's end asks again; otherwise spare it the call.
        self.capacity_freed = self._capacity_freed if full else None
        for listener in self._listeners:
            if full:
                listener.stop_accepting()
            else:
                listener.resume()
        if self._shedder is not None:
            if full:
                self._shedder.arm()
            else:
                self._shedder.disarm()

    def begin_stop(self) -> None:
        """A stop began: every client accepted from now on is refused."""
        self.stopping = True

    def stop_shedding(self) -> None:
        """The stop closes the listeners: nothing is shed any more."""
        if self._shedder is not None:
            self._shedder.close()

    def set_grace_deadline(self, deadline: float) -> None:
        """Connections ending from now on flush within ``deadline`` (monotonic)."""
        self.grace_deadline = deadline
