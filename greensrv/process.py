"""Running a process: signals, systemd, the first-run log and one-line start-up errors.

What a server needs from the process it runs in, kept apart from the server itself and used
both by the single process (:func:`serve_in_this_process`, behind ``Server.serve_forever()``)
and by each worker a master forks (:func:`ignore_signals`, :func:`flush_standard_streams`).
It drives anything that has the small :class:`Runnable` protocol, never a ``Server`` by name.

- :func:`default_logging`: ``serve_forever()`` is the entry point of small programs that never
  configure :mod:`logging`; without a handler Python would print only warnings, so a server
  would start and stop in silence. While it serves, such a program gets a plain stderr log,
  which steps aside as soon as the application has configured logging itself.
- :func:`brief_startup_errors`: a start-up error (an address in use...) is a
  :class:`StartupError` naming the address, which a program can catch; left uncaught it is
  printed as that one line instead of a traceback through greensrv's internals.
- :class:`StopSignals`: in the main thread, SIGTERM and SIGINT start a graceful stop; a second
  SIGINT forces it. Handlers only record the signal: the stop runs in its own greenlet.
- :class:`Notifier`: READY, STATUS and WATCHDOG for systemd (``systemd.py`` sends them).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import gevent

from . import systemd
from .addresses import format_address
from .errors import StartupError
from .logfiles import reopen_log_files

__all__ = ["Notifier", "Runnable", "StopSignals", "brief_startup_errors",
           "default_logging", "flush_standard_streams", "ignore_signals", "serve_in_this_process"]

log = logging.getLogger("greensrv")

#: The format of the fallback log: time, the logger (greensrv, or the application's own) and
#: the message; enough to follow a server by eye, nothing a person has to decode.
LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
#: The same under a master: several processes write to one stderr, so each line names its PID.
LOG_FORMAT_WITH_PID = "%(asctime)s [%(process)d] %(levelname)s [%(name)s] %(message)s"


class Runnable(Protocol):
    """What a process runs: a server, as far as this module is concerned."""

    name: str

    @property
    def addresses(self) -> list[Any]:
        """Where it listens, once started."""

    @property
    def stopping(self) -> bool:
        """True once a stop has begun."""

    @property
    def draining(self) -> bool:
        """True while a stop waits out its drain_delay (serving on, not ready)."""

    @property
    def live(self) -> int:
        """Clients it holds now (for the log of a forced stop)."""

    def start(self) -> None:
        """Open the listeners and begin serving; StartupError naming an address if impossible."""

    def stop(self, timeout: float | None = None) -> None:
        """The graceful stop."""

    def force_stop(self) -> None:
        """Close every client now (a second SIGINT during a graceful stop)."""

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until stopped."""


def serve_in_this_process(target: Runnable) -> None:
    """Start ``target`` and serve until it stops, as the process's only server.

    The first-run log while it runs; a start-up error marked to print as one line; SIGTERM and
    SIGINT turned into its graceful stop (the previous handlers restored before returning);
    systemd told it is ready, and pinged by its watchdog from this hub.
    """
    # The signal handlers come before start(): a signal right after "listening on" must not
    # find the default action (USR1's would end the process).
    with default_logging(), StopSignals(target):
        with brief_startup_errors():
            target.start()
        with Notifier(target):
            target.wait_stopped()


# -- logging ----------------------------------------------------------------------------------

def logging_configured() -> bool:
    """True when the application (or a test runner) has given logging somewhere to go."""
    return bool(logging.getLogger().handlers) or logging.getLogger("greensrv").hasHandlers()


@contextmanager
def default_logging(with_pid: bool = False) -> Iterator[None]:
    """While it is active, log INFO and above to stderr, unless logging is already configured.

    The handler goes on the root logger, as ``logging.basicConfig(level=INFO)`` would put it, so
    the application's own loggers are heard too; both are undone on exit, leaving logging as it
    was found.
    """
    if logging_configured():
        yield
        return
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT_WITH_PID if with_pid else LOG_FORMAT))
    level = root.level
    root.addHandler(handler)
    if level == logging.WARNING:  # Python's default: an application that asked for less or
        root.setLevel(logging.INFO)  # more keeps what it asked for
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def flush_standard_streams() -> None:
    """Write out what ``sys.stdout`` and ``sys.stderr`` hold (before a fork or ``os._exit``)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass


# -- start-up errors --------------------------------------------------------------------------

@contextmanager
def brief_startup_errors() -> Iterator[None]:
    """Let a :class:`StartupError` through, marked to print as one line if nobody catches it.

    The error propagates unchanged (``except OSError`` still works); only if it reaches the top
    of the program uncaught does the chained ``sys.excepthook`` installed here print
    ``greensrv: <message>`` instead of the traceback (the exit status is 1, as for any uncaught
    error). Every other exception goes to the previous hook untouched.
    """
    try:
        yield
    except StartupError as exc:
        exc.brief = True
        _install_excepthook()
        raise


def _install_excepthook() -> None:
    previous = sys.excepthook
    if getattr(previous, "greensrv_brief", False):
        return  # installed already: never stack

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, StartupError) and value.brief:
            sys.stderr.write(f"greensrv: {value.strerror}\n")
            sys.stderr.flush()
            return
        previous(kind, value, tb)

    excepthook.greensrv_brief = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


# -- signals ----------------------------------------------------------------------------------

def ignore_signals(signals: Sequence[int], original_signal: Callable[..., Any]) -> None:
    """Ignore ``signals`` in this process (a worker takes its orders from its master).

    ``original_signal`` is the unpatched ``signal.signal``: a worker may run before gevent's
    patched one has a hub to deliver to.
    """
    for signum in signals:
        original_signal(signum, signal.SIG_IGN)


class StopSignals:
    """While active in the main thread: SIGTERM and SIGINT stop ``target`` gracefully; a second
    SIGINT (Ctrl-C) forces it; a second SIGTERM is logged and leaves the graceful stop running.
    SIGUSR1 (logrotate's) reopens the log files and stops nothing (``greensrv.logfiles``).
    The previous handlers are restored on exit. Elsewhere than the main thread it does nothing.
    """

    def __init__(self, target: Runnable) -> None:
        self.target = target
        self._previous: dict[int, Any] = {}
        self._watchers: list[Any] = []

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.getsignal(sig)
                              for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
            self._watchers = [gevent.signal_handler(sig, self._on_signal, sig)
                              for sig in self._previous]
        return self

    def __exit__(self, *exc_info: object) -> None:
        for watcher in self._watchers:
            watcher.cancel()
        for sig, handler in self._previous.items():
            if handler is not None:
                signal.signal(sig, handler)
        self._watchers, self._previous = [], {}

    def _on_signal(self, signum: int) -> None:
        """Runs in the hub: only records the signal; the stop runs in its own greenlet."""
        target = self.target
        name = signal.Signals(signum).name
        if signum == signal.SIGUSR1:
            reopen_log_files()
            log.info("%s: SIGUSR1: reopening log files", target.name)
            return
        if target.stopping and target.draining:
            if signum == signal.SIGINT:
                log.warning("%s: second SIGINT: skipping the rest of drain_delay", target.name)
                gevent.spawn(target.force_stop)
            else:
                log.warning("%s: %s again: draining, then stopping gracefully; SIGINT (Ctrl-C) "
                            "skips the drain", target.name, name)
            return
        if target.stopping:
            if signum == signal.SIGINT:
                log.warning("%s: second SIGINT: forcing shutdown, closing %d connection(s) now",
                            target.name, target.live)
                gevent.spawn(target.force_stop)
            else:  # a supervisor's repeated TERM must not lose what a graceful stop would keep
                log.warning("%s: %s again: already stopping gracefully; SIGINT (Ctrl-C) forces "
                            "it", target.name, name)
            return
        log.info("%s: %s received: stopping gracefully; %s forces it", target.name, name,
                 "Ctrl-C again" if signum == signal.SIGINT else "SIGINT (Ctrl-C)")
        gevent.spawn(target.stop)


# -- systemd ----------------------------------------------------------------------------------

class Notifier:
    """READY, STATUS and WATCHDOG for a server running without workers (its stop sends
    STOPPING itself).

    The watchdog ping is a timer in the server's own hub, so a hub blocked by a handler that
    never yields stops the pings and systemd restarts the service, as it should.
    """

    def __init__(self, target: Runnable) -> None:
        self.target = target
        self._timer: Any = None

    def __enter__(self) -> Notifier:
        if not systemd.notify_socket():
            return self
        target = self.target
        systemd.notify("READY=1", f"STATUS={target.name}: serving on "
                       f"{', '.join(format_address(a) for a in target.addresses)}")
        interval = systemd.watchdog_interval()
        if interval is not None:
            self._timer = gevent.get_hub().loop.timer(interval, interval)
            self._timer.start(systemd.notify, "WATCHDOG=1")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None
