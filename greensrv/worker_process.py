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
from typing import TYPE_CHECKING, Any

import gevent
import gevent.os
from gevent.monkey import get_original

from . import listeners
from .log_files import reopen_all
from .master_ops import report_line

if TYPE_CHECKING:
    import mmap

    from .server import Server
    from .workers import Master

__all__ = ["flush_standard_streams", "heartbeat_interval", "run_worker"]

log = logging.getLogger("greensrv")

_signal = get_original("signal", "signal")

#: The most seconds between two heartbeats; a quarter of worker_timeout when that is shorter,
#: so a healthy worker is never mistaken for a blocked one.
HEARTBEAT_INTERVAL = 1.0
#: Environment the master keeps for itself: every systemd notification comes from the master.
MASTER_ONLY_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


def run_worker(master: Master, generation: int, control: int, status: int,
               heartbeat: mmap.mmap) -> int:
    """Boot, serve until told to stop (or the master is gone), stop gracefully; the exit code."""
    from .workers import MASTER_SIGNALS, SHARED_SOCKET_MAX_ACCEPT, WORKER_BOOT_ERROR

    for signum in MASTER_SIGNALS:
        _signal(signum, signal.SIG_IGN)  # orders come over the control pipe, from the master
    _signal(signal.SIGCHLD, signal.SIG_DFL)
    for key in MASTER_ONLY_ENVIRONMENT:
        os.environ.pop(key, None)
    _fresh_hub()
    random.seed()  # fork copied the master's random state; each worker draws its own
    try:
        server = master.server
        if master.factory is not None and generation > 1:
            server = master.factory()  # a reload: the application as it is on disk now
        server.workers = None  # in this process it is the ordinary single-process server
        server.owns_operations = False  # the master serves the admin endpoint and agent port
        server.drain_delay = 0.0  # and drained before telling this worker to stop
        assert master.sockets is not None
        server.set_listen(master.sockets.worker_entries())
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
    loop = gevent.get_hub().loop
    beat = loop.timer(0.0, interval)
    beat.start(_beat, heartbeat)
    report = None
    if server.admin is not None:  # the master's /metrics sums what its workers report
        os.set_blocking(status, False)  # a full pipe drops a report, never blocks the hub
        report = loop.timer(0.0, interval)
        report.start(_report, status, server)
    try:
        orders = gevent.spawn(_obey, control, server)
        server.wait_stopped()  # told by the master, or the application stopped its server
        orders.kill()
        if report is not None:
            _report(status, server)  # the last numbers, after the last client ended
    finally:
        beat.close()
        if report is not None:
            report.close()
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


def _obey(control: int, server: Server) -> None:
    """The master's orders, one per line: ``stop``, ``reopen`` (log files, on its SIGUSR1)."""
    gevent.os.make_nonblocking(control)
    pending = b""
    while True:
        data = gevent.os.nb_read(control, 64)
        if not data:  # the master is gone: stop all the same
            server.stop()
            return
        pending += data
        while b"\n" in pending:
            order, pending = pending.split(b"\n", 1)
            if order == b"reopen":
                reopen_all()
            elif order == b"stop":
                server.stop()
                return


def _report(status: int, server: Server) -> None:
    try:
        os.write(status, report_line(server))
    except OSError:
        pass  # full (the master is busy: the next report carries the same totals) or gone


def _send(fd: int, message: str) -> None:
    try:
        os.write(fd, message.encode("utf-8", "replace") + b"\n")
    except OSError:
        pass
