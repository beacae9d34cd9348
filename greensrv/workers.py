"""The master: binds the listeners once, forks workers, supervises them, reloads them.

The master runs anything with the small :class:`Servable` protocol defined here (gunicorn's
``Arbiter`` knows only ``app.cfg`` and ``app.wsgi()``): a few settings, and ``for_worker(sockets)``
giving, in each forked worker, something to start and stop over the listening sockets the master
opened (or, with ``reuse_port``, the worker's own ``SO_REUSEPORT`` sockets). A ``Server`` is one;
the master never imports it and never changes the object it is given. The master knows nothing
of connections; it talks to each worker over two pipes and one shared word:

- *control* (master → worker): ``stop`` asks for the graceful stop (``Server.stop``); end of
  file (the master died) means the same; ``reopen`` reopens the log files (the master got
  SIGUSR1). Workers ignore TERM, INT, HUP, TTIN, TTOU and USR1 from anyone, so a signal to the
  whole process group (systemd's stop, a terminal's Ctrl-C, logrotate) reaches only the master,
  which passes it on.
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
import os
import random
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from gevent.monkey import get_original

from . import systemd
from .errors import WorkerBootError
from .logfiles import file_handlers, reopen_log_files
from .master_ops import MasterOperations
from .master_sockets import MasterSockets
from .process import flush_standard_streams
from .servable import Servable, WorkerIdentity, WorkerServer
from .worker_process import (
    MASTER_SIGNALS,
    RESPAWN_BACKOFF_MAX,
    STABLE_UPTIME,
    WORKER_BOOT_ERROR,
    Worker,
    describe_status,
    heartbeat_interval,
    kill_quietly,
    new_heartbeat,
    respawn_delay,
    run_worker,
)

__all__ = ["MASTER_SIGNALS", "RESPAWN_BACKOFF_MAX", "WORKER_BOOT_ERROR", "Master", "Servable",
           "WorkerBootError", "respawn_delay"]

log = logging.getLogger("greensrv")

_poll = get_original("select", "poll")
_fork = get_original("os", "fork")
_waitpid = get_original("os", "waitpid")
_signal = get_original("signal", "signal")

#: Seconds past shutdown_timeout and the server's stop grace that the master waits for workers
#: to exit before it kills them: room for the final flush and the process exit itself.
STOP_MARGIN = 5.0
#: Longest nap of the master's loop: it also wakes on every signal and worker message.
TICK = 0.5
#: Clients a worker accepts per wake-up when several workers share one socket. Every worker is
#: woken by each new connection; accepting one at a time lets the others take their share of a
#: burst instead of the first one awake taking 64 (see docs/benchmarks.md for the measurement).
SHARED_SOCKET_MAX_ACCEPT = 1


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
        #: The admin endpoint and agent port (if asked for), the metrics book, the drain:
        #: made by run(), which binds the endpoint.
        self.ops: MasterOperations

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        """Bind, fork, supervise until stopped; raises WorkerBootError if a worker cannot boot."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(f"{self.name}: a server with workers must be run from the main "
                               "thread: its master handles the process's signals")
        self.sockets = MasterSockets(self.app.listen_specs, self.app.reuse_port, self.app.backlog)
        self.addresses = self.sockets.addresses
        try:
            self.ops = MasterOperations(self.app, self.phase, self._serving_count)
        except BaseException:
            self.sockets.close()
            raise
        previous = self._install_signals()
        try:
            log.info("%s: master %d serving %s with %d worker(s)", self.name, os.getpid(),
                     ", ".join(self.addresses), self.target)
            while self._step():
                self._wait()
        finally:
            self._restore_signals(previous)
            self.sockets.close()
            self.ops.close()
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
        if self._stop_deadline is None and self.ops.drain_over(now):
            self._begin_stop()
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
        poller = _poll()  # not select(): the admin endpoint's clients may push fds past 1024
        for fd in [self._wake_r, self.ops.fileno(), *(w.status for w in self.workers.values())]:
            if fd >= 0:
                poller.register(fd, select.POLLIN)
        try:
            readable = poller.poll(self._nap() * 1000)
        except InterruptedError:
            return
        self.ops.step()  # what its clients sent, and their deadlines (a no-op without them)
        for fd, _ in readable:
            if fd == self.ops.fileno():
                continue
            if fd == self._wake_r:
                try:
                    os.read(fd, 4096)
                except BlockingIOError:
                    pass
            else:
                self._read_status(fd)

    def _nap(self) -> float:
        nap = TICK
        if self._watchdog is not None:
            nap = min(nap, max(0.0, self._next_watchdog - time.monotonic()))
        return min(nap, self.ops.timeout() or TICK)

    def phase(self) -> str:
        """Where the master is: starting, serving, draining or stopping (``greensrv.health``)."""
        if self._stop_deadline is not None:
            return "stopping"
        if self.ops.drain_until is not None:
            return "draining"
        return "serving" if self._announced_ready else "starting"

    def _serving_count(self) -> int:
        return len(self._serving(self.generation))

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
            if self.ops.drain_until is not None and self._stop_deadline is None:
                if signum == signal.SIGINT:
                    log.warning("%s: second SIGINT: skipping the rest of drain_delay", self.name)
                    self._begin_stop()
                else:
                    log.info("%s: %s again: still draining, then stopping", self.name, name)
            elif self._stop_deadline is None and self.app.drain_delay > 0:
                self.ops.begin_drain(name, len(self.workers))
            elif self._stop_deadline is None:
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
        heartbeat = new_heartbeat()
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
        self.ops.close_in_worker()
        for other in self.workers.values():
            os.close(other.control)
            if other.status >= 0:
                os.close(other.status)
            other.heartbeat.close()
        self.workers = {}

    # -- what workers say ----------------------------------------------------------------------
    def _read_status(self, fd: int) -> bool:
        """Read what a worker said; False when there was nothing more to read."""
        worker = next((w for w in self.workers.values() if w.status == fd), None)
        if worker is None:
            return False
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return False
        if not data:
            os.close(fd)
            worker.status = -1
            return False
        worker.inbox += data
        while b"\n" in worker.inbox:
            line, worker.inbox = worker.inbox.split(b"\n", 1)
            message = line.decode("utf-8", "replace")
            if message.startswith("metrics "):
                self.ops.reported(worker.pid, message[8:])
            elif message == "ready":
                worker.ready = True
                log.info("%s: worker %d accepting (generation %d)", self.name, worker.pid,
                         worker.generation)
            elif message.startswith("error "):
                worker.error = message[6:]
            elif message == "recycle" and not worker.recycle:
                worker.recycle = True
                log.info("%s: worker %d reached its connection limit: replacing it", self.name,
                         worker.pid)
        return True

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
        self.ops.book.reloads += 1
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
            kill_quietly(pid, signal.SIGKILL)

    # -- supervision ---------------------------------------------------------------------------
    def _check_heartbeats(self, now: float) -> None:
        for worker in self.workers.values():
            age = worker.beat_age(now)
            if worker.blocked_for is None and age > self.worker_timeout:
                worker.blocked_for = age
                log.error("%s: worker %d blocked for %.1f s (worker_timeout %.1f s): killing "
                          "and replacing it", self.name, worker.pid, age, self.worker_timeout)
                kill_quietly(worker.pid, signal.SIGKILL)

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
        for _ in range(64):  # a last "error ..." or metrics report may still be in the pipe
            if worker.status < 0 or not self._read_status(worker.status):
                break
        self._forget(worker)
        how = describe_status(status)
        if worker.error is not None:
            self._boot_failed(worker, worker.error)
            return
        if worker.stop_sent:
            self._log_stopped(worker, how, status)
            return
        extra = (f" after being blocked for {worker.blocked_for:.1f} s"
                 if worker.blocked_for is not None else "")
        log.warning("%s: worker %d %s%s; replacing it", self.name, worker.pid, how, extra)
        self.ops.book.worker_restarts += 1
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
        self.ops.worker_gone(worker.pid)
        os.close(worker.control)
        if worker.status >= 0:
            os.close(worker.status)
            worker.status = -1
        worker.heartbeat.close()
