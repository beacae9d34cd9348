"""What a master runs: the protocol it defines, so that it never needs to know a Server.

gunicorn's ``Arbiter`` knows only ``app.cfg`` and ``app.wsgi()``; greensrv's master knows only a
:class:`Servable`: the few settings it needs to bind, fork, supervise and stop, and
``for_worker(sockets)`` which, in each forked worker, gives a :class:`WorkerServer` to start
over the sockets the master opened. ``greensrv.Server`` is one; a test runs the master over a
stub that is not.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from typing import Protocol

from .addresses import ListenSpec

__all__ = ["Servable", "WorkerIdentity", "WorkerServer"]


class WorkerServer(Protocol):
    """What a worker runs: made in the worker, over the sockets its master opened."""

    def start(self) -> None:
        """Begin serving; any exception is the worker's boot error."""

    def stop(self) -> None:
        """The graceful stop (the master's order, or the master is gone)."""

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until stopped."""

    def metrics_report(self) -> bytes | None:
        """A ``metrics {json}`` line for the master's /metrics and agent, or None (no admin
        endpoint or agent port: nothing to report)."""


class Servable(Protocol):
    """What the master runs: its settings, and a server for each worker it forks."""

    @property
    def name(self) -> str:
        """For the master's log and systemd's STATUS line."""

    @property
    def workers(self) -> int | None:
        """How many workers to run (None: one)."""

    @property
    def listen_specs(self) -> Sequence[ListenSpec]:
        """Where to listen; the master opens each once."""

    @property
    def reuse_port(self) -> bool:
        """Each worker opens its own SO_REUSEPORT socket per TCP address."""

    @property
    def worker_timeout(self) -> float:
        """Seconds a worker's hub may stay blocked before it is killed and replaced."""

    @property
    def backlog(self) -> int:
        """Clients the kernel queues per listening socket until one is accepted."""

    @property
    def shutdown_timeout(self) -> float:
        """Seconds a worker's graceful stop lets connections finish by themselves."""

    @property
    def stop_grace(self) -> float:
        """Seconds past that a worker's stop may still take to flush and close."""

    @property
    def concurrency(self) -> int:
        """Each worker's connection limit (-1: none), for the agent's weight."""

    @property
    def admin(self) -> str | None:
        """The admin endpoint's address (docs/operations.md), or None."""

    @property
    def agent(self) -> str | None:
        """The HAProxy agent port's address, or None."""

    @property
    def drain_delay(self) -> float:
        """Seconds of not-ready-but-serving between TERM/INT and the workers' stop."""

    def for_worker(self, sockets: list[socket.socket], max_accept: int | None = None,
                   accept_limit: int | None = None,
                   at_limit: Callable[[], None] | None = None) -> WorkerServer:
        """Called in a forked worker: a server over ``sockets`` (the worker owns them), that
        accepts at most ``max_accept`` clients per wake-up (None: its default). With
        ``accept_limit``, once it has accepted that many clients it calls ``at_limit`` (and,
        on shared sockets, stops accepting: its replacement and the others take over)."""


class WorkerIdentity(Protocol):
    """Who the workers run as (``greensrv.credentials.Credentials``)."""

    def apply(self) -> None:
        """In a worker, before its server starts."""

    def give(self, path: str) -> None:
        """Let the workers reopen the file at ``path``."""
