"""A server's run: its start (over sockets it opens, or a master's), the drain, the stop.

Apart from ``server.py`` so that what drives a server from outside, this process
(``process.Runnable``) or a master's worker (``servable.WorkerServer``), does it through
:class:`RunningServer` here, by public names: the server keeps its configuration, its parts
and what it reports, and none of those reach into it.

Resource handling: :class:`Lifecycle` owns the listeners and, when this process serves them,
the admin endpoint and agent port (``operations.py``); ``start`` closes the sockets it was given
if it cannot serve on them, and the stop closes the rest. The clients belong to the admission
and the per-client life; the stop's phases (``shutdown.py``) end them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import gevent
from gevent import getcurrent
from gevent.event import Event

from . import systemd
from .addresses import ListenSpec, OpenSocket, format_address, open_listening, set_defer_accept
from .admission import Admission
from .connection_ends import ConnectionEnds
from .connection_hooks import ServerHooks
from .listeners import Listener
from .metrics import encode_report, snapshot_of
from .operations import ServerOperations
from .shutdown import Shutdown

__all__ = ["Lifecycle", "RunningServer"]

log = logging.getLogger("greensrv")


class Lifecycle:
    """Where one server is (new, listening, draining, stopping, closed) and what it owns
    meanwhile. ``server`` is the ``Server`` it runs: its options, ``statistics()`` for the
    operations, and the argument of its ``started`` callback."""

    def __init__(self, server: Any, hooks: ServerHooks, admission: Admission,
                 shutdown: Shutdown, ends: ConnectionEnds | None) -> None:
        self.server = server
        self.config = server.config
        self.hooks = hooks
        self.admission = admission
        self.shutdown = shutdown
        #: How clients ended (metrics, the connection log), or None when neither is asked for.
        self.ends = ends
        self.listeners: list[Listener] = []
        self.started = False
        self.closed = False
        self.stopped = Event()
        self.stop_requested = False  # stop() was called: draining (drain_delay), or stopping
        self.skip_drain = Event()  # a second SIGINT during the drain
        #: The admin endpoint and agent port, when this process owns them (a worker's master
        #: owns its own).
        self.operations: ServerOperations | None = None

    @property
    def addresses(self) -> list[Any]:
        return [listener.address_repr for listener in self.listeners]

    @property
    def draining(self) -> bool:
        return self.stop_requested and not self.admission.stopping

    # -- start -------------------------------------------------------------------------------
    def start(self) -> None:
        """Bind every address (and the operations' own) and serve; a second call does nothing."""
        if not self.may_start():
            return
        config = self.config
        sockets = open_listening(config.listen, reuse_port=config.reuse_port,
                                 backlog=config.backlog)
        if config.admin is not None or config.agent is not None:
            try:
                self.operations = ServerOperations(self.server, self.ends, config.admin,
                                                   config.agent)
            except BaseException:
                _close(sockets)
                raise
        self.serve_on(sockets)
        if self.operations is not None:
            self.operations.phase = "serving"

    def may_start(self) -> bool:
        """False if started already; RuntimeError once a stop has begun."""
        if self.stop_requested or self.closed:
            raise RuntimeError("a stopped server cannot be started again")
        return not self.started

    def serve_on(self, sockets: list[OpenSocket], max_accept: int | None = None) -> None:
        """Serve on ``sockets`` (now the server's, closed by the stop)."""
        config = self.config
        if self.ends is not None:
            self.ends.pid = os.getpid()  # this process serves (a worker: not its master's)
        if config.defer_accept is not None:
            try:
                set_defer_accept([each.sock for each in sockets], config.defer_accept)
            except ValueError:  # an inherited unix socket: the sockets were given to us
                _close(sockets)
                raise
        self.listeners = [Listener(each.sock, self.hooks, each.unix_path, max_accept)
                          for each in sockets]
        self.started = True
        self.admission.attach(self.listeners)
        for listener in self.listeners:
            listener.start()
        self.admission.update()  # paused at once under concurrency=0
        log.info("%s: listening on %s", config.name,
                 ", ".join(format_address(a) for a in self.addresses))
        if config.started is not None:
            config.started(self.server)

    # -- stop --------------------------------------------------------------------------------
    def request_stop(self, timeout: float | None, drain: bool) -> None:
        """``Server.stop()``; ``drain``: first drain_delay's drain (a worker's master drained
        already). From a client's own greenlet the stop goes on in another one."""
        if self.stop_requested:
            if getcurrent() not in self.admission.clients:
                self.stopped.wait()
            return
        self.stop_requested = True
        if getcurrent() in self.admission.clients:
            gevent.spawn(self._stop, timeout, drain)
            return
        self._stop(timeout, drain)

    def _stop(self, timeout: float | None, drain: bool) -> None:
        config, ops = self.config, self.operations
        try:
            if drain and config.drain_delay > 0 and self.started and not self.closed:
                self.shutdown.drain(config.drain_delay, ops, self.skip_drain)
            self.admission.begin_stop()  # a client accepted from now on is refused
            if ops is not None:
                ops.phase = "stopping"
            systemd.notify("STOPPING=1", f"STATUS={config.name}: stopping")
            self.shutdown.run(self.listeners,
                              config.shutdown_timeout if timeout is None else float(timeout),
                              self.server.stop_grace)  # a class attribute tests may lower
        finally:
            if ops is not None:
                ops.close()
            self.closed = True
            self.stopped.set()

    def force_stop(self) -> None:
        """A second SIGINT: skip the rest of a drain, or close every client now."""
        if self.draining:
            self.skip_drain.set()
        else:
            self.shutdown.force()


def _close(sockets: list[OpenSocket]) -> None:
    for each in sockets:
        each.sock.close()


class RunningServer:
    """The server as a process runs it (``process.Runnable``) and as a worker runs it
    (``servable.WorkerServer``): over the sockets it opens itself, or over a master's."""

    def __init__(self, lifecycle: Lifecycle, sockets: list[OpenSocket] | None = None,
                 max_accept: int | None = None) -> None:
        self.lifecycle = lifecycle
        self.name = lifecycle.config.name
        self._sockets = sockets
        self._max_accept = max_accept

    @classmethod
    def for_worker(cls, lifecycle: Lifecycle, sockets: Sequence[Any],
                   max_accept: int | None = None, accept_limit: int | None = None,
                   at_limit: Callable[[], None] | None = None) -> RunningServer:
        """``Server.for_worker``: over the socket objects a master opened."""
        running = cls(lifecycle, [OpenSocket(sock, ListenSpec("socket", sock))
                                  for sock in sockets], max_accept)
        if accept_limit is not None and at_limit is not None:
            running.count_accepts(accept_limit, at_limit)
        return running

    @property
    def addresses(self) -> list[Any]:
        return self.lifecycle.addresses

    @property
    def stopping(self) -> bool:
        return self.lifecycle.stop_requested

    @property
    def draining(self) -> bool:
        return self.lifecycle.draining

    @property
    def live(self) -> int:
        return len(self.lifecycle.admission.clients)

    def start(self) -> None:
        lifecycle = self.lifecycle
        if self._sockets is None:
            lifecycle.start()
        elif lifecycle.may_start():
            lifecycle.serve_on(self._sockets, self._max_accept)

    def stop(self, timeout: float | None = None) -> None:
        # A worker's master drained (readiness, the agent) before telling it to stop.
        self.lifecycle.request_stop(timeout, drain=self._sockets is None)

    def force_stop(self) -> None:
        self.lifecycle.force_stop()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return bool(self.lifecycle.stopped.wait(timeout))

    def metrics_report(self) -> bytes | None:
        """What a worker tells its master for /metrics (None when no admin endpoint)."""
        lifecycle = self.lifecycle
        config = lifecycle.config
        if config.admin is None and config.agent is None:  # the agent's weight needs them too
            return None
        return encode_report(snapshot_of(lifecycle.server.statistics(), lifecycle.ends))

    def count_accepts(self, limit: int, at_limit: Callable[[], None]) -> None:
        """After ``limit`` accepted clients, call ``at_limit`` (the worker asks its master for a
        replacement: ``--max-worker-connections``). On a shared socket the server then stops
        accepting, so the other workers (or its replacement) take the next clients, which wait
        in the backlog meanwhile, never refused; its own ``SO_REUSEPORT`` socket keeps accepting
        until the master stops it, since closing it resets what is queued there. Only such a
        worker pays the count: one more call per accepted client."""
        lifecycle = self.lifecycle
        hooks = lifecycle.hooks
        accept = hooks.accept_client
        left = limit

        def counted(sock: Any, address: Any) -> None:
            nonlocal left
            accept(sock, address)
            left -= 1
            if left == 0:
                if not lifecycle.config.reuse_port:
                    lifecycle.server.set_concurrency(0)
                at_limit()

        hooks.accept_client = counted  # before start(): each listener takes it then
