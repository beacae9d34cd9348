"""Shedding at capacity: the IO side of ``greensrv.overload.ShedPolicy``.

While the server is at ``concurrency`` its listeners stop accepting and new clients wait in the
kernel's backlog. The :class:`Shedder` then looks at once if the kernel already reports clients
waiting, else watches the listening sockets (readable means someone waits). A look asks the
kernel how many wait (``TCP_INFO`` on a listening socket reports the accept queue's length in
``tcpi_unacked``; elsewhere it assumes one), asks the policy for that many of the connections
making the least progress, and closes them, each with a ``ConnectionShedError`` for
``client_error`` and a count in ``statistics().closed_shed``. Their greenlets end, the listeners
accept again, and the server fills up again: the watch starts over. It does nothing while the
backlog is empty, so it costs nothing below capacity.

Ownership: the shedder belongs to the server's admission (``admission.py``), which it asks
whether the server is at capacity; it reaches the rest of the server only through a
:class:`ShedderOwner` (the server's hooks); it only watches the listening sockets (never accepts
or closes them) and closes connections through ``Connection.shed``.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from gevent.hub import get_hub

from .connection import overload_progress, shed
from .errors import ConnectionShedError
from .overload import ShedPolicy, describe

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Shedder", "ShedderOwner", "accept_queue_length"]

log = logging.getLogger("greensrv")

_TCP_INFO = getattr(socket, "TCP_INFO", None)
#: struct tcp_info up to tcpi_unacked: eight one-byte fields, then rto, ato, snd_mss, rcv_mss
#: and unacked as 32-bit integers; for a listening socket Linux puts the accept queue's length
#: in tcpi_unacked (and the backlog in tcpi_sacked).
_TCP_INFO_HEAD = struct.Struct("8xIIIII")


def accept_queue_length(sock: Any) -> int | None:
    """Clients waiting in ``sock``'s accept queue, or None where the kernel does not say."""
    if _TCP_INFO is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_HEAD.size)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_HEAD.size:
        return None
    return int(_TCP_INFO_HEAD.unpack_from(raw)[4])


class ShedderOwner(Protocol):
    """What the shedder asks of the server that owns it (the server's hooks supply it)."""

    name: str
    #: The live connections by id (the server's registry: a connection still reading its PROXY
    #: header or in its TLS handshake is not in it, so it is never shed).
    connections: dict[int, Connection]

    def listening_sockets(self) -> list[Any]:
        """The sockets the listeners accept on."""

    def count(self, key: str) -> None:
        """A statistics counter went up by one ("closed_shed")."""


class Shedder:
    """Closes least-progress connections while the server is full and clients wait."""

    #: Connections closed per look at most: bounds one hub callback's work. Not smaller: the
    #: slots must turn over as fast as clients arrive, and each look waits for the victims'
    #: greenlets to end before the next one.
    max_per_round = 1024
    #: Seconds before looking again when nobody could be shed (every connection busy in its
    #: handler): often enough to react within a good client's patience, rarely enough to cost
    #: nothing measurable.
    retry_delay = 0.05
    #: Seconds at least before looking again for a connection about to qualify (one just
    #: accepted, a record about to fall behind its rate): a timer, not a busy loop.
    min_retry_delay = 0.001
    #: Seconds between two warnings that shedding is going on (each shed connection is counted
    #: in statistics and reported to client_error; the log only says that it happens).
    log_interval = 60.0

    def __init__(self, owner: ShedderOwner, policy: ShedPolicy,
                 at_capacity: Callable[[], int | None]) -> None:
        self.owner = owner
        self.policy = policy
        #: The concurrency limit while the server is full at it and not stopping, else None
        #: (the server's admission answers).
        self.at_capacity = at_capacity
        self._loop: Any = None  # the hub's, taken when first armed (never before a fork)
        self._watchers: dict[int, Any] = {}
        self._timer: Any = None
        self._armed = False
        self._pending: list[Connection] = []  # shed, greenlet not yet ended
        self._last_log: float | None = None
        self._messages: dict[str, str] = {}  # reason -> client error text (one per reason)

    def arm(self) -> None:
        """The server is full: watch the listening sockets for clients waiting (idempotent)."""
        owner = self.owner
        if self._armed or self._timer is not None or not self.at_capacity():
            return
        self._armed = True
        if self._loop is None:
            self._loop = get_hub().loop
        sockets = owner.listening_sockets()
        if any(accept_queue_length(sock) for sock in sockets):
            # The kernel says clients wait already: look on this loop iteration rather than
            # after another poll (measured: good clients' median wait under a persistent
            # slowloris fell from about 85 to about 55 ms).
            self._loop.run_callback(self._look)
            return
        for sock in sockets:
            watcher = self._watchers.get(id(sock))
            if watcher is None:
                watcher = self._watchers[id(sock)] = self._loop.io(sock.fileno(), 1)
            watcher.start(self._look)

    def disarm(self) -> None:
        """Room again (or stopping): stop watching."""
        self._stop_watching()
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def close(self) -> None:
        self.disarm()
        for watcher in self._watchers.values():
            watcher.close()
        self._watchers.clear()

    def _stop_watching(self) -> None:
        if self._armed:
            self._armed = False
            for watcher in self._watchers.values():
                watcher.stop()

    def _look(self) -> None:
        """Hub callback: a listening socket is readable while the server is full."""
        self._stop_watching()
        owner = self.owner
        concurrency = self.at_capacity()
        if not concurrency:
            return
        waiting = 0
        for sock in owner.listening_sockets():
            queued = accept_queue_length(sock)
            waiting += 1 if queued is None else queued
        live = owner.connections
        self._pending = [c for c in self._pending if c.id in live]
        wanted = min(max(waiting, 1) - len(self._pending), self.max_per_round)
        if wanted <= 0:
            self._retry(self.retry_delay)  # the last victims have not ended yet
            return
        now = time.monotonic()
        policy = self.policy
        candidates = [(conn, overload_progress(conn)) for conn in live.values()
                      if not conn.closing]
        victims = policy.choose(candidates, now, wanted)
        if not victims:
            soonest = policy.next_eligible((p for _, p in candidates), now)
            self._retry(self.retry_delay if soonest is None else
                        min(max(soonest, self.min_retry_delay), self.retry_delay))
            return
        if self._last_log is None or now - self._last_log >= self.log_interval:
            self._last_log = now
            log.warning("%s: at concurrency=%d with clients waiting: shedding the connections "
                        "making the least progress (statistics().closed_shed counts them; "
                        "logged at most once in %g s)",
                        owner.name, concurrency, self.log_interval)
        messages = self._messages
        for victim in victims:
            conn = victim.key
            owner.count("closed_shed")
            message = messages.get(victim.reason)
            if message is None:
                message = messages[victim.reason] = describe(victim, policy)
            shed(conn, ConnectionShedError(message, victim.reason, now - victim.stalled_since))
            self._pending.append(conn)
        # The victims' greenlets end on the next loop iteration; the listeners then accept,
        # fill the server again and arm() is called anew.

    def _retry(self, delay: float) -> None:
        if self._timer is None:
            self._timer = self._loop.timer(delay)
            self._timer.start(self._retry_now)

    def _retry_now(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if self.at_capacity():
            self.arm()
