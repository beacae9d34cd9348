"""The master: binds the listeners once, forks workers, supervises them, reloads them.

The master runs anything with the small :class:`Servable` protocol defined here (gunicorn's
``Arbiter`` knows only ``app.cfg`` and ``app.wsgi()``): a few settings, and ``for_worker(sockets)``
giving, in each forked worker, something to start and stop over the listening sockets the master
opened (or, with ``reuse_port``, the worker's own ``SO_REUSEPORT`` sockets). A ``Server`` is one;
the master never imports it and never changes the object it is given. The master knows nothing
of connections; it talks to each worker over two pipes and one shared word:

- *control* (master → worker): ``stop`` asks for the §3 graceful stop; end of file (the master
  died) means the same; ``reopen`` reopens the log files (the master got SIGUSR1). Workers ignore
  TERM, INT, HUP, TTIN, TTOU and USR1 from anyone, so a signal to the whole process group
  (systemd's stop, a terminal's Ctrl-C, logrotate) reaches only the master, which passes it on.
- *status* (worker → master): ``ready`` once it accepts, or ``error MESSAGE`` if it failed to boot.
- *heartbeat*: a double in shared memory that a timer in the worker's hub refreshes; a hub
  blocked for longer than ``worker_timeout`` stops refreshing it and the master kills the worker.

The master never runs a gevent hub: it is plain blocking code (the unpatched ``select``,
``fork`` and ``waitpid``, even if the application monkey-patched them), so a worker starts with
no greenlet of the master's. Signal handlers only record the signal; the loop acts on it.

Code: the master holds one loaded application per generation (the server it was given, then
what ``factory`` builds in the master at each HUP) and forks every worker of a generation from
it, so a crash replacement, a TTIN worker or a hung worker's replacement runs the code of its
generation, never an unreloaded edit on disk; a generation imports once, not once per worker.

Resource handling: the master owns the listening sockets (closed when it stops, unix socket files
unlinked) and each worker's pipes and heartbeat (closed when the worker is reaped). Error
handling: a worker that dies is logged and replaced, with a capped exponential backoff when it
keeps dying young. A worker that fails while booting at the very first start makes the master
stop and raise :class:`WorkerBootError`; later (a crash replacement, TTIN) the failure is a young
death like any other, retried with the backoff; during a reload it abandons the reload and the
old workers serve on.
"""

from __future__ import annotations

import logging
import mmap
import os
import random
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gevent.monkey import get_original

from . import systemd
from .addresses import ListenSpec
from .errors import WorkerBootError
from .logfiles import file_handlers, reopen_log_files
from .master_sockets import MasterSockets
from .process import flush_standard_streams
from .worker_process import (
    MASTER_SIGNALS,
    WORKER_BOOT_ERROR,
    WorkerServer,
    heartbeat_interval,
    run_worker,
)


class WorkerIdentity(Protocol):
    """Who the workers run as (``greensrv.credentials.Credentials``)."""

    def apply(self) -> None:
        """In a worker, before its server starts."""

    def give(self, path: str) -> None:
        """Let the workers reopen the file at ``path``."""


__all__ = ["MASTER_SIGNALS", "WORKER_BOOT_ERROR", "Master", "Servable", "WorkerBootError"]

log = logging.getLogger("greensrv")

_select = get_original("select", "select")
_fork = get_original("os", "fork")
_waitpid = get_original("os", "waitpid")
_signal = get_original("signal", "signal")

#: First delay before replacing a worker that died young again; doubles per further death.
RESPAWN_BACKOFF_INITIAL = 0.1
#: Cap of that delay: a crash loop costs at most one fork and one log line per 30 s, and a
#: fixed problem is picked up within 30 s (a HUP reload starts new workers at once anyway).
RESPAWN_BACKOFF_MAX = 30.0
#: A worker that lived this long before dying is not "dying young": the backoff starts over.
STABLE_UPTIME = 10.0
#: Seconds past shutdown_timeout and the server's stop grace that the master waits for workers
#: to exit before it kills them: room for the final flush and the process exit itself.
STOP_MARGIN = 5.0
#: Longest nap of the master's loop: it also wakes on every signal and worker message.
TICK = 0.5
#: Clients a worker accepts per wake-up when several workers share one socket. Every worker is
#: woken by each new connection; accepting one at a time lets the others take their share of a
#: burst instead of the first one awake taking 64 (see docs/benchmarks.md for the measurement).
SHARED_SOCKET_MAX_ACCEPT = 1


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

    def for_worker(self, sockets: list[socket.socket], max_accept: int | None = None,
                   accept_limit: int | None = None,
                   at_limit: Callable[[], None] | None = None) -> WorkerServer:
        """Called in a forked worker: a server over ``sockets`` (the worker owns them), that
        accepts at most ``max_accept`` clients per wake-up (None: its default). With
        ``accept_limit``, once it has accepted that many clients it calls ``at_limit`` (and,
        on shared sockets, stops accepting: its replacement and the others take over)."""


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

    def tell(self, message: bytes) -> None:
        try:
            os.write(self.control, message)
        except OSError:
            pass  # the worker is gone; reaping will tell


class Master:
    """Runs ``app`` as ``app.workers`` forked workers until TERM or INT; see the module.

    ``factory``, when given, builds the next generation's :class:`Servable` in the master when
    a reload begins (the command line re-imports the application with it; an exception abandons
    the reload); without it a reload forks new workers of the same object. ``credentials``: the
    identity workers switch to before serving. ``recycle``: ``(N, J)``, a worker that has
    accepted N plus a random 0..J connections is replaced as a reload replaces it.
    """

    def __init__(self, app: Servable, factory: Callable[[], Servable] | None = None, *,
                 credentials: WorkerIdentity | None = None,
                 recycle: tuple[int, int] | None = None) -> None:
        self.app = app
        self.factory = factory
        self.credentials = credentials
        self.recycle = recycle
        #: (the worker being recycled, its replacement's PID) while one is.
        self._recycling: tuple[Worker, int] | None = None
        self.name = app.name
        self.target: int = app.workers or 1
        self.worker_timeout = app.worker_timeout
        self.workers: dict[int, Worker] = {}
        self.generation = 1
        self._reload_generation: int | None = None
        #: The server each live generation's workers are forked from (see the module).
        self._loaded: dict[int, Servable] = {1: app}
        self._reload_again = False
        self._signals: list[int] = []
        self._failures = 0
        self._respawn_at = 0.0
        self._stop_deadline: float | None = None
        self._killed_all = False
        self._announced_ready = False
        self._boot_error: str | None = None
        self.sockets: MasterSockets | None = None
        self.addresses: list[str] = []
        #: A heartbeat older than this means the worker's hub is blocked right now: systemd's
        #: watchdog pings pause until it runs again or is replaced (two missed beats).
        self._beat_stale = 2 * heartbeat_interval(self.worker_timeout)
        self._watchdog = systemd.watchdog_interval()
        self._next_watchdog = 0.0
        self._wake_r = self._wake_w = -1

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        """Bind, fork, supervise until stopped; raises WorkerBootError if a worker cannot boot."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(f"{self.name}: a server with workers must be run from the main "
                               "thread: its master handles the process's signals")
        self.sockets = MasterSockets(self.app.listen_specs, self.app.reuse_port, self.app.backlog)
        self.addresses = self.sockets.addresses
        previous = self._install_signals()
        try:
            log.info("%s: master %d serving %s with %d worker(s)", self.name, os.getpid(),
                     ", ".join(self.addresses), self.target)
            while self._step():
                self._wait()
        finally:
            self._restore_signals(previous)
            self.sockets.close()
            for worker in list(self.workers.values()):
                self._forget(worker)
        if self._boot_error is not None:
            raise WorkerBootError(self._boot_error)
        log.info("%s: master %d stopped", self.name, os.getpid())

    def _step(self) -> bool:
        """One turn of the loop; False once stopped and every worker is gone."""
        for signum in self._take_signals():
            self._on_signal(signum)
        self._reap()
        now = time.monotonic()
        if self._stop_deadline is not None:
            if not self.workers:
                return False
            if now > self._stop_deadline and not self._killed_all:
                log.warning("%s: workers %s still running at the stop deadline: killing them",
                            self.name, sorted(self.workers))
                self._kill_all()
        else:
            self._check_heartbeats(now)
            self._advance_reload()
            self._spawn_missing(now)
            self._advance_recycle(now)
            self._announce_ready()
        self._ping_watchdog(now)
        return True

    def _wait(self) -> None:
        fds = [self._wake_r] + [w.status for w in self.workers.values() if w.status >= 0]
        try:
            readable, _, _ = _select(fds, [], [], self._nap())
        except InterruptedError:
            return
        for fd in readable:
            if fd == self._wake_r:
                try:
                    os.read(fd, 4096)
                except BlockingIOError:
                    pass
            else:
                self._read_status(fd)

    def _nap(self) -> float:
        if self._watchdog is None:
            return TICK
        return min(TICK, max(0.0, self._next_watchdog - time.monotonic()))

    # -- signals -------------------------------------------------------------------------------
    def _install_signals(self) -> dict[int, Any]:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        previous: dict[int, Any] = {sig: _signal(sig, self._record_signal)
                                    for sig in MASTER_SIGNALS}
        previous[signal.SIGCHLD] = _signal(signal.SIGCHLD, self._record_signal)
        previous[-1] = signal.set_wakeup_fd(self._wake_w)
        return previous

    def _restore_signals(self, previous: dict[int, Any]) -> None:
        signal.set_wakeup_fd(previous.pop(-1))
        for sig, handler in previous.items():
            _signal(sig, handler if handler is not None else signal.SIG_DFL)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _record_signal(self, signum: int, frame: Any) -> None:
        self._signals.append(signum)  # only recorded: the loop acts on it

    def _take_signals(self) -> list[int]:
        taken, self._signals = self._signals, []
        return taken

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # _reap runs on every turn
        name = signal.Signals(signum).name
        if signum in (signal.SIGTERM, signal.SIGINT):
            if self._stop_deadline is None:
                log.info("%s: master got %s: stopping %d worker(s) gracefully", self.name, name,
                         len(self.workers))
                self._begin_stop()
            elif signum == signal.SIGINT:
                log.warning("%s: second SIGINT: killing the workers", self.name)
                self._kill_all()
        elif self._stop_deadline is not None:
            log.info("%s: master ignores %s while stopping", self.name, name)
        elif signum == signal.SIGHUP:
            self._begin_reload()
        elif signum == signal.SIGUSR1:
            reopen_log_files()
            if self.credentials is not None:  # the workers reopen them as themselves
                for handler in file_handlers():
                    self.credentials.give(handler.baseFilename)
            log.info("%s: SIGUSR1: reopening log files (the master's and its workers')",
                     self.name)
            for worker in self.workers.values():
                worker.tell(b"reopen\n")
        elif signum == signal.SIGTTIN:
            self.target += 1
            log.info("%s: SIGTTIN: now %d worker(s)", self.name, self.target)
        elif signum == signal.SIGTTOU:
            if self.target > 1:
                self.target -= 1
            log.info("%s: SIGTTOU: now %d worker(s)", self.name, self.target)
            self._retire_extra()

    # -- starting workers ----------------------------------------------------------------------
    def _spawn_missing(self, now: float) -> None:
        for generation in {self.generation, self._reload_generation} - {None}:
            while len(self._serving(generation)) < self.target:
                if generation == self.generation and now < self._respawn_at:
                    return
                self._spawn(generation)  # type: ignore[arg-type]

    def _serving(self, generation: int | None) -> list[Worker]:
        return [w for w in self.workers.values()
                if w.generation == generation and not w.stop_sent]

    def _spawn(self, generation: int) -> int:
        server = self._loaded[generation]
        control_r, control_w = os.pipe()
        status_r, status_w = os.pipe()
        heartbeat = mmap.mmap(-1, 8)
        struct.pack_into("d", heartbeat, 0, time.monotonic())
        flush_standard_streams()  # else the worker would write the master's buffered output too
        pid = _fork()
        if pid == 0:  # the worker: never returns into the master's code
            code = 1
            try:
                os.close(control_w)
                os.close(status_r)
                self._close_in_worker()
                setup = self.credentials.apply if self.credentials is not None else None
                code = run_worker(self._worker_server(server), self.worker_timeout,
                                  control_r, status_w, heartbeat, setup=setup)
            except BaseException:
                log.exception("%s: worker %d failed", self.name, os.getpid())
            finally:
                os._exit(code)
        os.close(control_r)
        os.close(status_w)
        os.set_blocking(status_r, False)
        self.workers[pid] = Worker(pid, generation, control_w, status_r, heartbeat,
                                   time.monotonic())
        log.info("%s: master forked worker %d (generation %d)", self.name, pid, generation)
        return pid

    def _worker_server(self, app: Servable) -> Callable[[Callable[[], None]], WorkerServer]:
        """What a worker runs, made in the worker (its errors are its boot error): ``app`` is
        its generation's, loaded in the master; ``at_limit`` asks for its replacement."""
        def make(at_limit: Callable[[], None]) -> WorkerServer:
            assert self.sockets is not None
            shared = not self.sockets.reuse_port
            limit = None
            if self.recycle is not None:
                connections, jitter = self.recycle
                limit = connections + random.randint(0, jitter)  # drawn in the worker
            return app.for_worker(self.sockets.worker_sockets(),
                                  max_accept=SHARED_SOCKET_MAX_ACCEPT if shared else None,
                                  accept_limit=limit, at_limit=at_limit)
        return make

    def _close_in_worker(self) -> None:
        """In a fresh worker: drop what belongs to the master and to the other workers."""
        signal.set_wakeup_fd(-1)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        for other in self.workers.values():
            os.close(other.control)
            if other.status >= 0:
                os.close(other.status)
            other.heartbeat.close()
        self.workers = {}

    # -- what workers say ----------------------------------------------------------------------
    def _read_status(self, fd: int) -> None:
        worker = next((w for w in self.workers.values() if w.status == fd), None)
        if worker is None:
            return
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        if not data:
            os.close(fd)
            worker.status = -1
            return
        worker.inbox += data
        while b"\n" in worker.inbox:
            line, worker.inbox = worker.inbox.split(b"\n", 1)
            message = line.decode("utf-8", "replace")
            if message == "ready":
                worker.ready = True
                log.info("%s: worker %d accepting (generation %d)", self.name, worker.pid,
                         worker.generation)
            elif message.startswith("error "):
                worker.error = message[6:]
            elif message == "recycle" and not worker.recycle:
                worker.recycle = True
                log.info("%s: worker %d reached its connection limit: replacing it", self.name,
                         worker.pid)

    def _announce_ready(self) -> None:
        if self._announced_ready:
            return
        ready = [w for w in self._serving(self.generation) if w.ready]
        if len(ready) >= self.target:
            self._announced_ready = True
            log.info("%s: master %d ready: %d worker(s) accepting", self.name, os.getpid(),
                     len(ready))
            systemd.notify("READY=1", self._status_line())

    def _status_line(self) -> str:
        pids = sorted(w.pid for w in self._serving(self.generation))
        return (f"STATUS={self.name}: {len(pids)} worker(s) on {', '.join(self.addresses)} "
                f"(generation {self.generation}, pids {' '.join(map(str, pids))})")

    # -- reload --------------------------------------------------------------------------------
    def _begin_reload(self) -> None:
        if self._reload_generation is not None:
            self._reload_again = True
            log.info("%s: SIGHUP during a reload: another reload follows this one", self.name)
            return
        new = self.generation + 1
        log.info("%s: SIGHUP: reloading: loading generation %d", self.name, new)
        systemd.notify(*systemd.reloading_lines(),
                       f"STATUS={self.name}: reloading (generation {new})")
        server = self._loaded[self.generation]
        if self.factory is not None:
            try:
                server = self.factory()
            except Exception as exc:
                log.debug("%s: generation %d failed to load", self.name, new, exc_info=True)
                self._reload_generation = new
                self._abandon_reload(" ".join(f"{type(exc).__name__}: {exc}".split()))
                return
        self._loaded[new] = server
        self._reload_generation = new
        log.info("%s: forking %d worker(s) of generation %d", self.name, self.target, new)

    def _advance_reload(self) -> None:
        new = self._reload_generation
        if new is None:
            return
        ready = [w for w in self._serving(new) if w.ready]
        if len(ready) < self.target:
            return
        old = [w for w in self.workers.values() if w.generation < new and not w.stop_sent]
        for worker in old:
            self._stop_worker(worker)
        self._loaded = {new: self._loaded[new]}  # the old code is no longer forked from
        self._recycling = None  # the reload replaced it too
        self.generation, self._reload_generation = new, None
        self._failures, self._respawn_at = 0, 0.0
        log.info("%s: reload done: generation %d accepting (workers %s); stopping %s",
                 self.name, new, sorted(w.pid for w in ready), sorted(w.pid for w in old))
        systemd.notify("READY=1", self._status_line())
        if self._reload_again:
            self._reload_again = False
            self._begin_reload()

    def _abandon_reload(self, error: str) -> None:
        new = self._reload_generation
        log.error("%s: reload abandoned, generation %d keeps serving: %s", self.name,
                  self.generation, error)
        for worker in self._serving(new):
            self._stop_worker(worker)
        self._loaded.pop(new, None)  # type: ignore[arg-type]
        self._reload_generation = None
        self._reload_again = False
        systemd.notify("READY=1", f"STATUS={self.name}: reload failed ({error}); "
                       f"generation {self.generation} still serving")

    # -- recycling -----------------------------------------------------------------------------
    def _advance_recycle(self, now: float) -> None:
        """One worker at a time: fork its replacement; once that accepts, stop the old one
        gracefully (a reload's guarantees, for one worker)."""
        if self._reload_generation is not None:
            return
        if self._recycling is not None:
            old, new_pid = self._recycling
            new = self.workers.get(new_pid)
            if new is None:  # the replacement died: try again after the backoff
                self._recycling = None
            elif new.ready:
                self._recycling = None
                if old.pid in self.workers and not old.stop_sent:
                    log.info("%s: worker %d replaced by %d", self.name, old.pid, new_pid)
                    self._stop_worker(old)
            return
        waiting = [w for w in self._serving(self.generation) if w.recycle]
        if waiting and now >= self._respawn_at:
            old = min(waiting, key=lambda w: w.started)
            self._recycling = (old, self._spawn(self.generation))

    # -- stopping workers ----------------------------------------------------------------------
    def _stop_worker(self, worker: Worker) -> None:
        worker.stop_sent = True
        worker.tell(b"stop\n")

    def _retire_extra(self) -> None:
        for generation in (self.generation, self._reload_generation):
            serving = sorted(self._serving(generation), key=lambda w: w.started)
            for worker in serving[:max(len(serving) - self.target, 0)]:
                log.info("%s: retiring worker %d", self.name, worker.pid)
                self._stop_worker(worker)

    def _begin_stop(self) -> None:
        app = self.app
        self._stop_deadline = (time.monotonic() + app.shutdown_timeout + app.stop_grace
                               + STOP_MARGIN)
        systemd.notify("STOPPING=1", f"STATUS={self.name}: stopping")
        if self.sockets is not None:
            self.sockets.close()  # with the workers' copies closed too, new clients are refused
        for worker in self.workers.values():
            self._stop_worker(worker)

    def _kill_all(self) -> None:
        self._killed_all = True
        for pid in self.workers:
            _kill(pid, signal.SIGKILL)

    # -- supervision ---------------------------------------------------------------------------
    def _check_heartbeats(self, now: float) -> None:
        for worker in self.workers.values():
            age = worker.beat_age(now)
            if worker.blocked_for is None and age > self.worker_timeout:
                worker.blocked_for = age
                log.error("%s: worker %d blocked for %.1f s (worker_timeout %.1f s): killing "
                          "and replacing it", self.name, worker.pid, age, self.worker_timeout)
                _kill(worker.pid, signal.SIGKILL)

    def _ping_watchdog(self, now: float) -> None:
        if self._watchdog is None or now < self._next_watchdog:
            return
        healthy = all(w.beat_age(now) <= self._beat_stale
                      for w in self.workers.values() if w.ready)
        if healthy:
            systemd.notify("WATCHDOG=1")
        self._next_watchdog = now + self._watchdog

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = _waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self.workers.get(pid)
            if worker is not None:
                self._worker_ended(worker, status)

    def _worker_ended(self, worker: Worker, status: int) -> None:
        if worker.status >= 0:
            self._read_status(worker.status)  # a last "error ..." may still be in the pipe
        self._forget(worker)
        how = _describe_status(status)
        if worker.error is not None:
            self._boot_failed(worker, worker.error)
            return
        if worker.stop_sent:
            self._log_stopped(worker, how, status)
            return
        extra = (f" after being blocked for {worker.blocked_for:.1f} s"
                 if worker.blocked_for is not None else "")
        log.warning("%s: worker %d %s%s; replacing it", self.name, worker.pid, how, extra)
        if worker.generation == self._reload_generation and not worker.ready:
            self._abandon_reload(f"worker {worker.pid} {how} while booting")
            return
        self._back_off(worker)

    def _log_stopped(self, worker: Worker, how: str, status: int) -> None:
        if self._killed_all and os.WIFSIGNALED(status):
            log.warning("%s: worker %d %s: still running at the stop deadline", self.name,
                        worker.pid, how)
        elif worker.blocked_for is not None:
            log.warning("%s: worker %d %s during its graceful stop, after being blocked "
                        "for %.1f s", self.name, worker.pid, how, worker.blocked_for)
        else:
            log.info("%s: worker %d %s after its graceful stop", self.name, worker.pid, how)

    def _back_off(self, worker: Worker) -> None:
        """A worker of the current generation died: its replacement waits if they die young."""
        now = time.monotonic()
        self._failures = self._failures + 1 if now - worker.started < STABLE_UPTIME else 1
        delay = respawn_delay(self._failures)
        if delay:
            log.warning("%s: %d workers in a row died young: next one in %.1f s",
                        self.name, self._failures, delay)
        self._respawn_at = now + delay

    def _boot_failed(self, worker: Worker, error: str) -> None:
        if self._stop_deadline is not None or worker.stop_sent:
            log.error("%s: worker %d failed to boot: %s", self.name, worker.pid, error)
        elif worker.generation == self._reload_generation:
            self._abandon_reload(f"worker {worker.pid} failed to boot: {error}")
        elif not self._announced_ready:  # the very first start: exit rather than crash-loop
            log.error("%s: worker %d failed to boot: %s", self.name, worker.pid, error)
            self._boot_error = f"worker failed to boot: {error}"
            self._begin_stop()
        else:  # the service is up: a replacement that cannot boot yet is retried
            log.error("%s: worker %d failed to boot: %s; retrying", self.name, worker.pid,
                      error)
            self._back_off(worker)

    def _forget(self, worker: Worker) -> None:
        self.workers.pop(worker.pid, None)
        os.close(worker.control)
        if worker.status >= 0:
            os.close(worker.status)
            worker.status = -1
        worker.heartbeat.close()


def respawn_delay(failures: int) -> float:
    """Seconds before the next worker after ``failures`` workers in a row died young: the first
    is replaced at once, then 0.1 s doubling up to ``RESPAWN_BACKOFF_MAX``."""
    if failures <= 1:
        return 0.0
    return min(RESPAWN_BACKOFF_MAX, RESPAWN_BACKOFF_INITIAL * 2 ** min(failures - 2, 30))


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
