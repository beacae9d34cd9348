"""One worker: the master's record of it, and its life after the fork (a fresh hub, the
server, the heartbeat, the stop).

The worker never returns into the master's code: :func:`run_worker` gives the exit status and
the caller ends the process with ``os._exit``, so nothing the master (or a test runner that
forked it) registered with ``atexit`` runs twice.

A worker and its master talk over two pipes and one shared word:

- *control* (master → worker): ``stop`` asks for the graceful stop (``Server.stop``); end of
  file (the master died) means the same; ``reopen`` reopens the log files (the master got
  SIGUSR1). Workers ignore TERM, INT, HUP, TTIN, TTOU and USR1 from anyone, so a signal to the
  whole process group (systemd's stop, a terminal's Ctrl-C, logrotate) reaches only the master.
- *status* (worker → master): ``ready`` once it accepts, ``error MESSAGE`` if it failed to
  boot, ``recycle`` once it reached its connection limit.
- *heartbeat*: a double in shared memory that a timer in the worker's hub refreshes; a hub
  blocked for longer than ``worker_timeout`` stops refreshing it and the master kills the worker.
"""

from __future__ import annotations

import logging
import mmap
import os
import random
import signal
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.os
from gevent.monkey import get_original

from .logfiles import reopen_log_files
from .process import flush_standard_streams, ignore_signals
from .servable import WorkerServer

__all__ = ["MASTER_SIGNALS", "RESPAWN_BACKOFF_MAX", "STABLE_UPTIME", "WORKER_BOOT_ERROR", "Worker",
           "describe_status", "flush_standard_streams", "heartbeat_interval", "kill_quietly",
           "new_heartbeat", "respawn_delay", "run_worker"]

log = logging.getLogger("greensrv")

_signal = get_original("signal", "signal")

#: Signals the master acts on; workers ignore them (they take orders over their control pipe).
MASTER_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU,
                  signal.SIGUSR1)
#: A worker's exit status when it could not boot (gunicorn uses the same number).
WORKER_BOOT_ERROR = 3
#: First delay before replacing a worker that died young again; doubles per further death.
RESPAWN_BACKOFF_INITIAL = 0.1
#: Cap of that delay: a crash loop costs at most one fork and one log line per 30 s, and a
#: fixed problem is picked up within 30 s (a HUP reload starts new workers at once anyway).
RESPAWN_BACKOFF_MAX = 30.0
#: A worker that lived this long before dying is not "dying young": the backoff starts over.
STABLE_UPTIME = 10.0
#: The most seconds between two heartbeats; a quarter of worker_timeout when that is shorter,
#: so a healthy worker is never mistaken for a blocked one.
HEARTBEAT_INTERVAL = 1.0
#: Environment the master keeps for itself: every systemd notification comes from the master.
MASTER_ONLY_ENVIRONMENT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


@dataclass
class Worker:
    """The master's view of one worker process."""

    pid: int
    generation: int
    control: int  # write end of the master → worker pipe
    status: int  # read end of the worker → master pipe; -1 once at EOF
    heartbeat: mmap.mmap
    started: float
    ready: bool = False
    stop_sent: bool = False
    recycle: bool = False  # it reached its connection limit: replace it
    error: str | None = None
    inbox: bytes = b""
    blocked_for: float | None = field(default=None)

    def beat_age(self, now: float) -> float:
        return now - struct.unpack_from("d", self.heartbeat)[0]

    def receive(self) -> list[str]:
        """The whole messages its status pipe holds now (none at EOF, which closes it)."""
        try:
            data = os.read(self.status, 4096)
        except BlockingIOError:
            return []
        if not data:
            os.close(self.status)
            self.status = -1
            return []
        self.inbox += data
        *lines, self.inbox = self.inbox.split(b"\n")
        return [line.decode("utf-8", "replace") for line in lines]

    def close(self) -> None:
        """Close the master's ends of its pipes and its heartbeat (it has been reaped)."""
        os.close(self.control)
        if self.status >= 0:
            os.close(self.status)
            self.status = -1
        self.heartbeat.close()

    def tell(self, message: bytes) -> None:
        try:
            os.write(self.control, message)
        except OSError:
            pass  # the worker is gone; reaping will tell


def new_heartbeat() -> mmap.mmap:
    """A worker's heartbeat: a double in memory shared across the fork, starting now."""
    heartbeat = mmap.mmap(-1, 8)
    _beat(heartbeat)
    return heartbeat

    def metrics_report(self) -> bytes | None:
        """A ``metrics {json}`` line for the master's /metrics and agent, or None (no admin
        endpoint or agent port: nothing to report)."""


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
    interval = heartbeat_interval(worker_timeout)
    loop = gevent.get_hub().loop
    beat = loop.timer(0.0, interval)
    beat.start(_beat, heartbeat)
    report = None
    if server.metrics_report() is not None:  # the master's /metrics sums its workers' reports
        os.set_blocking(status, False)  # a full pipe drops a report, never blocks the hub
        report = loop.timer(0.0, interval)
        report.start(_report, status, server)
    try:
        orders = gevent.spawn(_stop_when_told, control, server)
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
            log.info("greensrv: worker %d reopened %d log file(s)", os.getpid(),
                     reopen_log_files())
        if not data or b"stop" in data:  # no data: the master is gone, stop all the same
            server.stop()
            return


def _report(status: int, server: WorkerServer) -> None:
    line = server.metrics_report()
    if line is None:
        return
    try:
        os.write(status, line)
    except OSError:
        pass  # full (the master is busy: the next report carries the same totals) or gone


def _send(fd: int, message: str) -> None:
    try:
        os.write(fd, message.encode("utf-8", "replace") + b"\n")
    except OSError:
        pass


def respawn_delay(failures: int) -> float:
    """Seconds before the next worker after ``failures`` workers in a row died young: the first
    is replaced at once, then 0.1 s doubling up to ``RESPAWN_BACKOFF_MAX``."""
    if failures <= 1:
        return 0.0
    return min(RESPAWN_BACKOFF_MAX, RESPAWN_BACKOFF_INITIAL * 2 ** min(failures - 2, 30))


def describe_status(status: int) -> str:
    """How a reaped worker ended, for the log: the signal that killed it or its exit status."""
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def kill_quietly(pid: int, signum: int) -> None:
    """Send ``signum`` to ``pid`` unless it is already gone."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
