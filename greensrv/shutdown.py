"""A server's graceful stop, in its documented phases (``docs/lifecycle.md``).

1. Close every listener: new clients are refused (the admission already refuses any client
   accepted as the stop began).
2. Let live connections finish on their own for up to the stop's timeout.
3. End input on the rest (``get()`` returns the records already read, then EOF) and give them
   the grace to flush their replies and end.
4. Close what remains and kill its greenlets; log how many were forced.

Before phase 1, ``drain_delay`` may keep the server serving, not ready, for a while
(:meth:`Shutdown.drain`). Every deadline is monotonic. The connections bound their own final
flush by the admission's ``grace_deadline``, which each phase moves.

Ownership: :class:`Shutdown` never opens anything; it closes the listeners and connections the
server hands it, and kills the client greenlets the admission counts. A client greenlet killed
before it ran never saw its socket: the per-client life closes that socket for it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import gevent
from gevent.event import Event

from . import systemd
from .admission import Admission
from .client_life import ClientLife
from .connection import Connection, stop_input
from .error_log import client_log
from .event_life import EventClient

__all__ = ["Shutdown"]

log = logging.getLogger("greensrv")

#: Seconds past the grace that phase 3 waits: a connection that uses all of its grace then
#: ends by itself rather than being counted as forced.
GRACE_MARGIN = 0.25
#: Seconds phase 4 waits for the killed greenlets to end.
KILL_TIMEOUT = 1.0


class Shutdown:
    """Runs the phases for one server; :attr:`forced` counts the clients closed by force."""

    def __init__(self, name: str, admission: Admission, life: ClientLife,
                 connections: dict[int, Connection]) -> None:
        self.name = name
        self.admission = admission
        self.life = life
        self.connections = connections
        self.forced = 0

    def drain(self, delay: float, operations: Any, skip: Event) -> None:
        """``drain_delay``, before the phases: turn not ready (readiness, the agent, systemd)
        and serve on unchanged for ``delay`` seconds, or until ``skip`` (a second SIGINT)."""
        if operations is not None:
            operations.phase = "draining"
            operations.drain_until = time.monotonic() + delay
        log.info("%s: draining for %g s before stopping (not ready; serving as before)",
                 self.name, delay)
        systemd.notify(f"STATUS={self.name}: draining for {delay:g} s, then stopping")
        skip.wait(delay)

    def run(self, listeners: Iterable[Any], timeout: float, grace: float) -> None:
        """Phases 1 to 4 (see the module); returns when every client greenlet has ended."""
        start = time.monotonic()
        admission, clients = self.admission, self.admission.clients
        # Connections that end while we wait flush within what is left of the whole shutdown.
        admission.set_grace_deadline(start + timeout + grace)
        admission.stop_shedding()
        for listener in listeners:
            listener.close()
        if clients:
            log.info("%s: stopping: %d connection(s) have %.1f s to finish",
                     self.name, len(clients), timeout)
        self.life.all_ended.wait(timeout)
        left = len(clients)
        if left:
            admission.set_grace_deadline(time.monotonic() + grace)
            for conn in list(self.connections.values()):
                stop_input(conn)
            self.life.all_ended.wait(grace + GRACE_MARGIN)
        if clients:
            self.force()
        self.life.stopped()
        # A second SIGINT may have forced the close while we waited above.
        forced = self.forced
        client_log.flush()  # what was counted and not yet summarised, before the last line
        log.info("%s: stopped in %.2f s; %d connection(s) ended by the shutdown, "
                 "%d forced closed", self.name, time.monotonic() - start, max(left, forced),
                 forced)

    def force(self) -> None:
        """Close every connection now and kill every client greenlet."""
        clients = self.admission.clients
        self.forced += len(clients)
        for conn in list(self.connections.values()):
            conn.close()
        # A connection waiting without a greenlet (idle_greenlets=False) has none to kill:
        # closed above, it ends in a greenlet of its own, which the last wait waits for.
        arguments = [(glet, glet.args) for glet in clients
                     if not isinstance(glet, EventClient)]  # a dead greenlet drops its args
        gevent.killall([glet for glet, _ in arguments], block=True, timeout=KILL_TIMEOUT)
        for glet, args in arguments:
            if args and glet.dead and glet in clients:  # killed before it ran: no life began
                self.life.discard_unstarted(glet, *args)
        self.life.all_ended.wait(KILL_TIMEOUT)
