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
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import gevent
import gevent.os
from gevent.monkey import get_original

from .logfiles import reopen_log_files
from .process import flush_standard_streams, ignore_signals

if TYPE_CHECKING:
    import mmap

__all__ = ["MASTER_SIGNALS", "WORKER_BOOT_ERROR", "WorkerServer", "flush_standard_streams",
           "heartbeat_interval", "run_worker"]

log = logging.getLogger("greensrv")

_signal = get_original("signal", "signal")

#: Signals the master acts on; workers ignore them (they take orders over their control pipe).
MASTER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                  signal.SIGUSR1)
#: A worker's exit status when it could not boot (gunicorn uses the same number).
WORKER_BOOT_ERROR = 3
#: The most seconds between two heartbeats; a quarter of worker_timeout when that is shorter,
#: so a healthy worker is never mistaken for a blocked one.
HEARTBEAT_INTERVAL = 1.0
#: Environment the master keeps for itself: every systemd notification comes from the master.
MASTER_ONLY_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class WorkerServer(Protocol):
    """What a worker runs: made in the worker, over the sockets its master opened."""

    def start(self) -> None:
        """Begin serving; any exception is the worker's boot error."""

    def stop(self) -> None:
        """The graceful stop (the master's order, or the master is gone)."""

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until stopped."""


def run_worker(make_server: Callable[[Callable[[], None]], WorkerServer], worker_timeout: float,
               control: int, status: int, heartbeat: mmap.mmap,
               setup: Callable[[], None] | None = None) -> int:
    """Boot, serve until told to stop (or the master is gone), stop gracefully; the exit code.

    ``setup`` runs first (e.g. switching to an unprivileged user), then ``make_server``, here,
    after the fork and on a fresh hub: what either raises, or what the server's ``start()``
    raises, is reported to the master as this worker's boot error. ``make_server`` is given
    the function that asks the master to replace this worker (its connection limit reached).
    """
    ignore_signals(MASTER_SIGNALS, _signal)  # orders come over the control pipe
    _signal(signal.SIGCHLD, signal.SIG_DFL)
    for key in MASTER_ONLY_ENVIRONMENT:
        os.environ.pop(key, None)
    _fresh_hub()
    random.seed()  # fork copied the master's random state; each worker draws its own
    try:
        if setup is not None:
            setup()
        server = make_server(lambda: _send(status, "recycle"))
        server.start()
    except BaseException as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        log.debug("greensrv: worker %d failed to boot", os.getpid(), exc_info=True)
        _send(status, f"error {detail}")
        return WORKER_BOOT_ERROR
    _send(status, "ready")
    beat = gevent.get_hub().loop.timer(0.0, heartbeat_interval(worker_timeout))
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


def _stop_when_told(control: int, server: WorkerServer) -> None:
    gevent.os.make_nonblocking(control)
    while True:
        data = gevent.os.nb_read(control, 64)
        if b"reopen" in data:  # the master got SIGUSR1
            reopen_log_files()
        if not data or b"stop" in data:  # no data: the master is gone, stop all the same
            server.stop()
            return


def _send(fd: int, message: str) -> None:
    try:
        os.write(fd, message.encode("utf-8", "replace") + b"\n")
    except OSError:
        pass
