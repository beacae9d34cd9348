"""One worker's life after the master's fork: a fresh hub, the server, the heartbeat, the stop.

The worker never returns into the master's code: :func:`run_worker` gives the exit status and
the caller ends the process with ``os._exit``, so nothing the master (or a test runner that
forked it) registered with ``atexit`` runs twice.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
import gevent.os
from gevent.monkey import get_original

from . import listeners
from .logfiles import reopen_log_files

if TYPE_CHECKING:
    import mmap

    from .master_sockets import MasterSockets
    from .server import Server

__all__ = ["flush_standard_streams", "heartbeat_interval", "run_worker"]

log = logging.getLogger("greensrv")

_signal = get_original("signal", "signal")

#: The most seconds between two heartbeats; a quarter of worker_timeout when that is shorter,
#: so a healthy worker is never mistaken for a blocked one.
HEARTBEAT_INTERVAL = 1.0
#: Environment the master keeps for itself: every systemd notification comes from the master.
MASTER_ONLY_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def run_worker(server: Server, sockets: MasterSockets | None, control: int, status: int,
               heartbeat: mmap.mmap, setup: Callable[[], None] | None = None,
               recycle: tuple[int, int] | None = None) -> int:
    """Boot ``server`` (its generation's, loaded by the master) over the master's ``sockets``,
    serve until told to stop (or the master is gone), stop gracefully; the exit code.

    ``setup`` runs first (e.g. switching to an unprivileged user); what it raises is a boot
    error like any other. ``recycle``: see :func:`_recycle_after`.
    """
    from .workers import MASTER_SIGNALS, SHARED_SOCKET_MAX_ACCEPT, WORKER_BOOT_ERROR

    for signum in MASTER_SIGNALS:
        _signal(signum, signal.SIG_IGN)  # orders come over the control pipe, from the master
    _signal(signal.SIGCHLD, signal.SIG_DFL)
    for key in MASTER_ONLY_ENVIRONMENT:
        os.environ.pop(key, None)
    _fresh_hub()
    random.seed()  # fork copied the master's random state; each worker draws its own
    try:
        if setup is not None:
            setup()
        if recycle is not None:
            limit, jitter = recycle
            _recycle_after(server, limit + random.randint(0, jitter), status)
        server.workers = None  # in this process it is the ordinary single-process server
        assert sockets is not None
        server.set_listen(sockets.worker_entries())
        if not server.reuse_port:
            listeners.Listener.max_accept = SHARED_SOCKET_MAX_ACCEPT
        server.start()
    except BaseException as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.debug("greensrv: worker %d failed to boot", os.getpid(), exc_info=True)
        _send(status, f"error {detail}")
        return WORKER_BOOT_ERROR
    _send(status, "ready")
    interval = heartbeat_interval(server.worker_timeout)
    beat = gevent.get_hub().loop.timer(0.0, interval)
    beat.start(_beat, heartbeat)
    try:
        orders = gevent.spawn(_stop_when_told, control, server)
        server.wait_stopped()  # told by the master, or the application stopped its server
        orders.kill()
    finally:
        beat.close()
        logging.shutdown()  # flush the log and what the application printed: the worker
        flush_standard_streams()  # ends with os._exit, which flushes nothing
    return 0


def flush_standard_streams() -> None:
    """Write out what ``sys.stdout`` and ``sys.stderr`` hold (before a fork or ``os._exit``)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


def heartbeat_interval(worker_timeout: float) -> float:
    """Seconds between a worker's heartbeats for this ``worker_timeout``."""
    return min(HEARTBEAT_INTERVAL, worker_timeout / 4)


def _fresh_hub() -> None:
    """Replace the hub and loop inherited from the master by new ones with no greenlet in them.

    The master never ran its hub, so throwing it away runs none of the callbacks or greenlets
    scheduled there (e.g. ones the application spawned at import).
    """
    gevent.reinit()
    gevent.get_hub().destroy(destroy_loop=True)
    gevent.get_hub()


def _beat(heartbeat: Any) -> None:
    struct.pack_into("d", heartbeat, 0, time.monotonic())


def _stop_when_told(control: int, server: Server) -> None:
    gevent.os.make_nonblocking(control)
    while True:
        data = gevent.os.nb_read(control, 64)
        if b"reopen" in data:
            reopen_log_files()
        if not data or b"stop" in data:  # no data: the master is gone, stop all the same
            server.stop()
            return


def _recycle_after(server: Server, limit: int, status: int) -> None:
    """After ``limit`` accepted connections, ask the master for a replacement. On a shared
    socket the worker also stops accepting then (the others, or its replacement, take the next
    clients; they wait in the backlog meanwhile, never refused); its own ``SO_REUSEPORT`` socket
    keeps accepting until the master stops it, since closing it resets what is queued there.
    Only a worker with the limit pays the count, one call per accepted client."""
    hooks = server._hooks
    accept = hooks.accept_client
    left = limit

    def counted(sock: Any, address: Any) -> None:
        nonlocal left
        accept(sock, address)
        left -= 1
        if left == 0:
            if not server.reuse_port:
                server.set_concurrency(0)
            _send(status, "recycle")

    hooks.accept_client = counted


def _send(fd: int, message: str) -> None:
    try:
        os.write(fd, message.encode("utf-8", "replace") + b"\n")
    except OSError:
        pass
