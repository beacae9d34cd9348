"""Server: listening, the client pool, the per-client lifecycle and graceful shutdown.

Resource handling: the server owns its listening sockets (closed by ``stop()``) and every
client greenlet (in one set from accept to end, waited for or killed by ``stop()``). Each client's
socket is owned by its :class:`~greensrv.Connection`, which the client's greenlet always closes
in a ``finally``, and ``client_disconnected`` runs there too, exactly once.

Error handling: a handler, callback, filter or socket error reaches ``client_error`` and ends only
that client. A listener error reaches ``error``; accept errors caused by exhaustion (EMFILE…) are
retried with backoff and never stop the server.
"""

from __future__ import annotations

import itertools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import gevent
from gevent import getcurrent
from gevent.event import Event

from . import systemd
from .admin import check_ops_addresses
from .client_life import ClientLife
from .connection import Connection, ConnectionHooks
from .connection_ends import LOG_FORMATS, ConnectionEnds
from .errors import GreensrvError
from .filters import Filter, Line
from .limits import Limits
from .listeners import Listener, adopt_socket, bind_tcp, bind_unix, parse_listen
from .log_files import reopen_all
from .master_sockets import reuse_port_socket
from .options import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HIGH_MARK,
    DEFAULT_LOW_MARK,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_RECORD_TIMEOUT,
    DEFAULT_WORKER_TIMEOUT,
    check_int,
    check_seconds,
    filter_factory,
)
from .overload import DEFAULT_RECORD_GRACE, DEFAULT_RECORD_MIN_RATE, DEFAULT_SHED_MIN_AGE
from .proxy_io import DEFAULT_PROXY_TIMEOUT, DEFAULT_PROXY_TRUSTED, proxy_settings
from .shedding import Shedder, make_shedder
from .startup import brief_startup_errors, default_logging, format_address, listen_error
from .statistics import ErrorLogLimiter, Statistics

if TYPE_CHECKING:
    from .operations import ServerOperations

__all__ = ["Server", "serve_forever"]

log = logging.getLogger("greensrv")

#: A listener's full() while concurrency is unlimited: always False, and a C call (listeners
#: ask before every accept, so a Python function would cost a frame per client).
_never_full: Callable[[], bool] = itertools.repeat(False).__next__

_CALLBACKS = ("client_input", "client_pre_connect", "client_connected", "client_disconnected",
              "client_error", "client_flushed", "client_high", "client_low", "started", "error")


_error_log_limiter = ErrorLogLimiter(log)


def _default_client_error(conn: Connection, exc: BaseException) -> None:
    """Log it; identical messages past a burst are counted, not each logged.

    A client's misbehaviour (greensrv's own errors: bad framing, TLS failure, timeouts, slow
    reader) is a one-line warning, since its traceback would only show greensrv's internals; any
    other exception is a bug in the application and is logged with its traceback.
    """
    name = conn.server.name if conn.server is not None else "greensrv"
    _error_log_limiter.log(f"{name}: error on {conn!r}: %s", exc,
                           with_traceback=not isinstance(exc, GreensrvError))


def _default_error(server: Server, exc: BaseException) -> None:
    log.error("%s: listener error: %s", server.name, exc,
              exc_info=(type(exc), exc, exc.__traceback__))


class Server:
    """A TCP server running one greenlet per client; see ``docs/lifecycle.md``.

    Exactly one of ``handler`` (the client's whole life, blocking-style) and ``client_input``
    (one call per record, POE-style) is given. All other options are keyword-only (the README
    maps each to its POE and mod_perl name; ``docs/limits.md`` explains every limit):

    What to run, once per client, in that client's greenlet:
      handler(conn)             the client's whole life; shut down gracefully when it returns
      client_input(conn, rec)   called per input record, POE's default acceptor
      client_connected(conn, *client_args)   once, before the first input (banners)
      client_args=()            extra arguments for client_connected
      client_disconnected(conn) exactly once per connection that reached client_connected
      client_error(conn, exc)   socket, filter or handler error (default: log it)
      client_shutdown_on_error=True   shut the connection down after client_error
      client_pre_connect(sock, address)   before any Connection: return the socket to use
                                (the same, or TLS-wrapped) or None to drop the client
      client_flushed(conn)      each time queued output has all been written
      client_high(conn), client_low(conn)   queued output crossed high_mark up / low_mark down

    Where to listen:
      host="127.0.0.1", port=0  one address; port 0 lets the OS pick (see ``address``)
      listen=[...]              several: "host:port", "[v6]:port", "unix:/path", "fd:N" or a
                                bound socket; not with host/port
      started(server)           once listening;  error(server, exc): a listener error

    Framing (``greensrv.filters``):
      filter=Line()             both directions; an instance (cloned per client) or a factory
      input_filter, output_filter   one per direction: both or neither, not with filter

    Limits and timeouts (bytes, seconds; None switches a timeout off):
      concurrency=-1            most live connections; -1 unlimited, 0 pauses accepting
      high_mark=512 KiB, low_mark=128 KiB   output watermarks: reading pauses above high,
                                resumes below low
      output_limit=8 MiB        queued output past which a client is cut (SlowClientError)
      shutdown_timeout=10       how long stop() lets live connections finish by themselves
      idle_timeout=None         waiting for input this long closes the connection
      record_timeout=30         a record taking longer to arrive closes it (slowloris)
      record_min_rate=500       bytes/s a record must keep arriving at after record_grace=5 s
                                (None: off); record_start_timeout=None bounds the first byte
      shedding=True             at concurrency with clients waiting, close the connections
                                making the least progress (``docs/overload.md``); one silent
                                for less than shed_min_age=0.1 s is spared
      max_connections_per_ip=None   live connections per client IP
      ssl_context=None          TLS on every connection; handshake_timeout=10 bounds it
      name="greensrv"           used in logs and repr (POE's Alias)

    Behind a load balancer (``docs/proxy.md``):
      proxy_protocol=None       "v1", "v2" or "any": every connection starts with a PROXY header
      proxy_trusted=loopback    addresses/CIDRs allowed to send one; others are refused
      proxy_timeout=5           seconds to receive the whole header

    Production (``docs/deploy.md``):
      workers=None              N: serve_forever() runs a master with N forked workers
      reuse_port=False          each worker binds its own SO_REUSEPORT socket
      worker_timeout=30         a worker whose hub is blocked this long is killed and replaced

    Operations (``docs/operations.md``), all served by the process that owns the listeners:
      admin="HOST:PORT"         HTTP: /metrics (Prometheus), /livez, /readyz
      agent="HOST:PORT"         HAProxy's agent-check: "up N%" (free capacity) or "drain"
      drain_delay=0             seconds of not-ready-but-serving before a stop begins
      access_log=False          one line per ended connection to the "greensrv.access" logger,
                                access_log_format="text" or "json"

    Use: ``serve_forever()`` (blocks; SIGINT/SIGTERM stop it gracefully), or ``start()`` and
    later ``stop()``, or ``with Server(...) as server:`` which starts it and stops it on exit.
    From a handler, ``conn.server`` is this object: ``conn.server.connections`` for broadcasts.
    """

    #: Seconds ``stop()`` gives connections still running after ``shutdown_timeout`` to see
    #: EOF, flush their queued output and end, before closing them and killing their greenlets.
    stop_grace: float = 1.0

    def __init__(
        self,
        handler: Callable[[Connection], Any] | None = None,
        *,
        client_input: Callable[[Connection, Any], Any] | None = None,
        host: str | None = None,
        port: int | None = None,
        listen: Any = None,
        concurrency: int = -1,
        filter: Filter | Callable[[], Filter] | None = None,
        input_filter: Filter | Callable[[], Filter] | None = None,
        output_filter: Filter | Callable[[], Filter] | None = None,
        client_pre_connect: Callable[[Any, Any], Any] | None = None,
        client_connected: Callable[..., Any] | None = None,
        client_args: Iterable[Any] = (),
        client_disconnected: Callable[[Connection], Any] | None = None,
        client_error: Callable[[Connection, BaseException], Any] | None = None,
        client_shutdown_on_error: bool = True,
        client_flushed: Callable[[Connection], Any] | None = None,
        high_mark: int = DEFAULT_HIGH_MARK,
        low_mark: int = DEFAULT_LOW_MARK,
        client_high: Callable[[Connection], Any] | None = None,
        client_low: Callable[[Connection], Any] | None = None,
        started: Callable[[Server], Any] | None = None,
        error: Callable[[Server, BaseException], Any] | None = None,
        shutdown_timeout: float = 10.0,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        idle_timeout: float | None = None,
        ssl_context: Any = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        record_timeout: float | None = DEFAULT_RECORD_TIMEOUT,
        record_min_rate: float | None = DEFAULT_RECORD_MIN_RATE,
        record_grace: float = DEFAULT_RECORD_GRACE,
        record_start_timeout: float | None = None,
        shedding: bool = True,
        shed_min_age: float = DEFAULT_SHED_MIN_AGE,
        max_connections_per_ip: int | None = None,
        proxy_protocol: str | None = None,
        proxy_trusted: Iterable[Any] = DEFAULT_PROXY_TRUSTED,
        proxy_timeout: float = DEFAULT_PROXY_TIMEOUT,
        name: str = "greensrv",
        workers: int | None = None,
        reuse_port: bool = False,
        worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
        admin: str | None = None,
        agent: str | None = None,
        drain_delay: float = 0.0,
        access_log: bool = False,
        access_log_format: str = "text",
    ) -> None:
        # Every option as given, so the command line can build the same server with overrides.
        self._given_options = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        if (handler is None) == (client_input is None):
            raise TypeError("Server needs exactly one of handler and client_input "
                            f"(got {'both' if handler is not None else 'neither'})")
        given = dict(client_input=client_input, client_pre_connect=client_pre_connect,
                     client_connected=client_connected, client_disconnected=client_disconnected,
                     client_error=client_error, client_flushed=client_flushed,
                     client_high=client_high, client_low=client_low, started=started,
                     error=error)
        if handler is not None and not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        for key in _CALLBACKS:
            value = given[key]
            if value is not None and not callable(value):
                raise TypeError(f"{key} must be callable, not {type(value).__name__}")
        self._on_client_error = client_error or _default_client_error
        self.client_shutdown_on_error = bool(client_shutdown_on_error)
        self._on_started = started
        self._on_error = error or _default_error
        self._output_callbacks = {k: v for k, v in (("flushed", client_flushed),
                                                     ("high", client_high),
                                                     ("low", client_low)) if v is not None}

        if filter is not None and (input_filter is not None or output_filter is not None):
            raise TypeError("give filter, or input_filter and output_filter, not both")
        if (input_filter is None) != (output_filter is None):
            raise TypeError("input_filter and output_filter go together: give both or neither")
        if input_filter is not None:
            make_in = filter_factory(input_filter, "input_filter")
            make_out: Callable[[], Filter] | None = filter_factory(output_filter,
                                                                   "output_filter")
        else:
            make_in = filter_factory(filter if filter is not None else Line(), "filter")
            make_out = None  # the same filter both ways

        check_int("concurrency", concurrency, minimum=-1)
        #: The bounds every connection of this server enforces, checked once here.
        self.limits = Limits(high_mark=high_mark, low_mark=low_mark, output_limit=output_limit,
                             idle_timeout=idle_timeout, record_timeout=record_timeout,
                             record_min_rate=record_min_rate, record_grace=record_grace,
                             record_start_timeout=record_start_timeout,
                             handshake_timeout=handshake_timeout)
        check_seconds("shutdown_timeout", shutdown_timeout)
        if max_connections_per_ip is not None:
            check_int("max_connections_per_ip", max_connections_per_ip, minimum=1)
        if ssl_context is not None and not hasattr(ssl_context, "wrap_socket"):
            raise TypeError(f"ssl_context must be an ssl.SSLContext, "
                            f"not {type(ssl_context).__name__}")
        self.concurrency = concurrency
        self.high_mark = high_mark
        self.low_mark = low_mark
        self.output_limit = output_limit
        self.shutdown_timeout = float(shutdown_timeout)
        self.idle_timeout = self.limits.idle_timeout
        self.ssl_context = ssl_context
        self.handshake_timeout = self.limits.handshake_timeout
        self.record_timeout = self.limits.record_timeout
        self.max_connections_per_ip = max_connections_per_ip
        self._proxy = proxy_settings(proxy_protocol, proxy_trusted, proxy_timeout)
        self.name = name
        if workers is not None:
            check_int("workers", workers, minimum=1)
        check_seconds("worker_timeout", worker_timeout, positive=True)
        self.workers = workers
        self.reuse_port = bool(reuse_port)
        self.worker_timeout = float(worker_timeout)
        self.admin, self.agent = check_ops_addresses(admin, agent)
        check_seconds("drain_delay", drain_delay)
        self.drain_delay = float(drain_delay)
        self.access_log = bool(access_log)
        #: Counts how clients ended (metrics) and writes the connection log; None when neither
        #: is asked for, so a client's end costs nothing more.
        self._ends = (ConnectionEnds(access_log_format if self.access_log else None)
                      if self.admin is not None or self.access_log else None)
        if self._ends is None and access_log_format not in LOG_FORMATS:
            raise ValueError(f"access_log_format must be one of {', '.join(LOG_FORMATS)}, "
                             f"not {access_log_format!r}")
        #: The admin endpoint and agent port, when this process owns them (a worker does not:
        #: its master does); made by start().
        self._operations: ServerOperations | None = None
        self.owns_operations = True

        if listen is not None:
            if host is not None or port is not None:
                raise TypeError("give listen, or host and port, not both")
            entries = [listen] if isinstance(listen, str) or hasattr(listen, "accept") else listen
            self._listen_specs = [parse_listen(e) for e in entries]
            if not self._listen_specs:
                raise ValueError("listen: no address given")
        else:
            if port is not None:
                check_int("port", port, minimum=0)
                if port > 65535:
                    raise ValueError(f"port must be at most 65535, not {port}")
            self._listen_specs = [("tcp", (host if host is not None else "127.0.0.1",
                                           port if port is not None else 0))]

        self._listeners: list[Listener] = []
        self._connections: dict[int, Connection] = {}
        self._started = False
        self._closed = False
        self._stopping = False
        self._stop_requested = False  # stop() was called: draining (drain_delay), or stopping
        self._skip_drain = Event()
        self._forced = 0  # client greenlets the shutdown closed and killed
        self._stopped = Event()
        self._counters: dict[str, int] = {}
        self._per_ip: dict[Any, int] = {}
        self._shedder: Shedder | None = None
        self._hooks = _ServerHooks(self)
        self._shedder = make_shedder(self._hooks, shedding, shed_min_age,
                                     self.limits.record_min_rate)
        self._pick_full_hook()
        self._life = ClientLife(
            name=name, handler=handler, client_input=client_input,
            shutdown_on_error=self.client_shutdown_on_error, pre_connect=client_pre_connect,
            on_connected=client_connected, client_args=tuple(client_args),
            on_disconnected=client_disconnected, make_in=make_in, make_out=make_out,
            ssl_context=ssl_context, limits=self.limits, hooks=self._hooks,
            connections=self._connections, counters=self._counters, server=self,
            proxy=self._proxy,
            claim_ip=self._claim_ip if max_connections_per_ip is not None else None,
            release_ip=self._release_ip,
            claimed_at_accept=max_connections_per_ip is not None and self._proxy is None)
        #: Each client's greenlet from accept until its end (ClientLife.spawn): what counts
        #: toward concurrency, what stop() waits for and what a forced stop kills.
        self._clients = self._life.greenlets
        self._hooks.closed = self._life.connection_closed  # type: ignore[method-assign]
        self._hooks.accept_client = self._life.accept
        self._life.ends = self._ends

    # -- properties ----------------------------------------------------------------------------
    @property
    def options(self) -> dict[str, Any]:
        """The keyword options this server was made with (the command line rebuilds it from
        them with its own overrides)."""
        return dict(self._given_options)

    @property
    def listen_specs(self) -> list[tuple[str, Any]]:
        """Where ``start()`` will listen, parsed: ``(kind, value)`` per ``listen`` entry."""
        return list(self._listen_specs)

    def set_listen(self, entries: Iterable[Any]) -> None:
        """Before ``start()``: listen on ``entries`` (``listen``'s forms) instead; a worker uses
        it for the sockets its master bound."""
        if self._started:
            raise RuntimeError("set_listen() must come before start()")
        specs = [parse_listen(e) for e in entries]
        if not specs:
            raise ValueError("listen: no address given")
        self._listen_specs = specs

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until ``stop()`` has finished; False if ``timeout`` seconds passed first."""
        return bool(self._stopped.wait(timeout))

    @property
    def started(self) -> bool:
        """True once listening, until stopped."""
        return self._started and not self._closed

    @property
    def closed(self) -> bool:
        """True once ``stop()`` has finished."""
        return self._closed

    @property
    def address(self) -> Any:
        """The first bound address, e.g. ``("127.0.0.1", 40123)``."""
        return self.addresses[0] if self._listeners else None

    @property
    def addresses(self) -> list[Any]:
        """Every bound address: ``(host, port)`` for TCP (IPv6 too), the path for unix."""
        return [listener.address_repr for listener in self._listeners]

    @property
    def connections(self) -> list[Connection]:
        """The live connections, from just before client_connected until after disconnected."""
        return list(self._connections.values())

    def statistics(self) -> Statistics:
        """A frozen snapshot of what the server is doing and why clients were dropped."""
        live = [c for c in self._connections.values() if not c.closed]  # closed: counted below
        limit = self.concurrency
        counters = self._counters
        return Statistics(
            accepting=self.started and not self._full(),
            live_connections=len(self._clients),
            pool_free=None if limit < 0 else max(limit - len(self._clients), 0),
            accepted=counters.get("accepted", 0),
            refused=counters.get("refused_pre_connect", 0) + counters.get("refused_per_ip", 0),
            refused_per_ip=counters.get("refused_per_ip", 0),
            bytes_in=self._life.bytes_in_closed + sum(c.bytes_in for c in live),
            bytes_out=self._life.bytes_out_closed + sum(c.bytes_out for c in live),
            client_errors=counters.get("client_errors", 0),
            tls_failures=counters.get("tls_failures", 0),
            closed_idle=counters.get("closed_idle", 0),
            closed_record_timeout=counters.get("closed_record_timeout", 0),
            closed_output_limit=counters.get("closed_output_limit", 0),
            closed_shed=counters.get("closed_shed", 0),
            closed_filter_error=counters.get("closed_filter_error", 0),
            accept_capacity_errors=counters.get("accept_capacity_errors", 0),
            listener_errors=counters.get("listener_errors", 0),
            proxy_rejected=counters.get("proxy_rejected", 0),
            proxy_untrusted=counters.get("proxy_untrusted", 0),
            proxy_timeouts=counters.get("proxy_timeouts", 0),
        )

    def _listening_sockets(self) -> list[Any]:
        return [listener.socket for listener in self._listeners]

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._started else "new"
        return f"<Server {self.name!r} {state} {self.addresses} live={len(self._clients)}>"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Bind every address and start accepting in the background."""
        if self.workers is not None:
            raise TypeError("start() cannot run a server with workers set: a master owns the "
                            "whole process; call serve_forever()")
        if self._stop_requested or self._closed:
            raise RuntimeError("a stopped server cannot be started again")
        if self._started:
            return
        if self._ends is not None:
            self._ends.pid = os.getpid()  # this process serves (a worker: not its master's)
        if self.owns_operations and (self.admin is not None or self.agent is not None):
            from .operations import ServerOperations

            self._operations = ServerOperations(self, self.admin, self.agent)
        sockets = []
        try:
            for kind, value in self._listen_specs:
                try:
                    if kind == "tcp" and self.reuse_port:  # one of several processes on the port
                        sockets.append((adopt_socket(reuse_port_socket(None, *value)), None))
                    elif kind == "tcp":
                        sockets.append((bind_tcp(*value), None))
                    elif kind == "unix":
                        sockets.append((bind_unix(value), value))
                    elif kind == "fd":
                        sockets.append((adopt_socket(_socket_from_fd(value)), None))
                    elif kind == "systemd":
                        sockets.extend((adopt_socket(_socket_from_fd(fd)), None)
                                       for fd in systemd.listen_sockets(value))
                    else:
                        sockets.append((adopt_socket(value), None))
                except OSError as exc:
                    raise listen_error(kind, value, exc) from exc
        except BaseException:
            for sock, _ in sockets:
                sock.close()
            if self._operations is not None:
                self._operations.close()
                self._operations = None
            raise
        self._listeners = [Listener(sock, self._hooks, path) for sock, path in sockets]
        self._started = True
        for listener in self._listeners:
            listener.start()
            if self._full():
                listener.stop_accepting()
        log.info("%s: listening on %s", self.name,
                 ", ".join(format_address(a) for a in self.addresses))
        if self._operations is not None:
            self._operations.phase = "serving"
        if self._on_started is not None:
            self._on_started(self)

    def serve_forever(self) -> None:
        """Start if needed and block until stopped.

        In the main thread, SIGTERM and SIGINT start a graceful ``stop()``; a second SIGINT
        (Ctrl-C) forces it, a second SIGTERM is logged and leaves the graceful stop running.
        The previous signal handlers are restored before returning. With ``workers`` set this
        process becomes the master of that many forked workers (``docs/deploy.md``).

        When the application has not configured :mod:`logging`, INFO and above go to stderr
        while it runs. A start-up error (an address in use...) raises :class:`StartupError`;
        left uncaught, it ends the program with that one line on stderr, not a traceback.
        """
        if self.workers is not None:
            from .workers import Master

            with default_logging(), brief_startup_errors():
                Master(self).run()
            return
        with default_logging():
            with brief_startup_errors():
                self.start()
            restore = self._install_signal_handlers()
            notifier = systemd.SingleProcessNotifier(self)
            try:
                self._stopped.wait()
            finally:
                notifier.close()
                restore()

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {sig: signal.getsignal(sig)
                    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
        watchers = [gevent.signal_handler(sig, self._on_signal, sig) for sig in previous]

        def restore() -> None:
            for watcher in watchers:
                watcher.cancel()
            for sig, handler in previous.items():
                if handler is not None:
                    signal.signal(sig, handler)
        return restore

    def _on_signal(self, signum: int) -> None:
        """Runs in the hub: only records the signal; stop() runs in its own greenlet."""
        name = signal.Signals(signum).name
        if signum == signal.SIGUSR1:
            log.info("%s: SIGUSR1: reopened %d log file(s)", self.name, reopen_all())
            return
        if self._stop_requested and not self._stopping:  # draining
            if signum == signal.SIGINT:
                log.warning("%s: second SIGINT: skipping the rest of drain_delay", self.name)
                self._skip_drain.set()
            else:
                log.warning("%s: %s again: draining, then stopping gracefully; SIGINT "
                            "(Ctrl-C) skips the drain", self.name, name)
            return
        if self._stopping:
            if signum == signal.SIGINT:
                log.warning("%s: second SIGINT: forcing shutdown, closing %d connection(s) now",
                            self.name, len(self._clients))
                gevent.spawn(self._force_close)
            else:  # a supervisor's repeated TERM must not lose what a graceful stop would keep
                log.warning("%s: %s again: already stopping gracefully; SIGINT (Ctrl-C) forces "
                            "it", self.name, name)
            return
        log.info("%s: %s received: stopping gracefully; %s forces it", self.name, name,
                 "Ctrl-C again" if signum == signal.SIGINT else "SIGINT (Ctrl-C)")
        gevent.spawn(self.stop)

    def __enter__(self) -> Server:
        """``with Server(...) as server:`` starts it (unless started) and stops it on exit."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def set_concurrency(self, n: int) -> None:
        """Change the connection limit live: 0 pauses accepting, -1 is unlimited."""
        check_int("concurrency", n, minimum=-1)
        self.concurrency = n
        self._pick_full_hook()
        self._update_accepting()

    def _full(self) -> bool:
        """True while no client may be accepted."""
        limit = self.concurrency
        # _clients holds each client's greenlet from accept until it ends (handshake and final
        # drain included): exactly what counts toward concurrency.
        return self._stopping or (limit >= 0 and len(self._clients) >= limit)

    def _listener_full(self) -> bool:
        """A listener's check before each accept under a concurrency limit. When full, the
        listener stops watching its socket, so each client's end must now ask whether accepting
        may resume (``capacity_freed``); and clients wait, so the shedder is armed."""
        if not self._full():
            return False
        self._life.capacity_freed = self._capacity_freed
        if self._shedder is not None and self.concurrency > 0:
            self._shedder.arm()
        return True

    def _capacity_freed(self) -> None:
        """A client ended while accepting was paused at the limit (ClientLife calls it)."""
        if not self._stopping:
            self._update_accepting()

    def _pick_full_hook(self) -> None:
        """The listeners' full(): never full while concurrency is unlimited (a stop closes the
        listeners, and a client accepted as it begins is refused), so an unlimited server pays
        no call for it per accept."""
        full = _never_full if self.concurrency < 0 else self._listener_full
        self._hooks.full = full
        for listener in self._listeners:
            listener.set_full_check(full)

    def _at_capacity(self) -> int | None:
        """The shedder's question: the concurrency limit while full at it and not stopping."""
        limit = self.concurrency
        if self._stopping or limit <= 0 or len(self._clients) < limit:
            return None
        return limit

    def _update_accepting(self) -> None:
        full = self._full()
        # While paused, each client's end asks again; otherwise spare it the call.
        self._life.capacity_freed = self._capacity_freed if full else None
        for listener in self._listeners:
            if full:
                listener.stop_accepting()
            else:
                listener.resume()
        if self._shedder is not None:
            if full:
                self._shedder.arm()
            else:
                self._shedder.disarm()

    def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown in phases; see ``docs/lifecycle.md``.

        1. Close every listener: new clients are refused.
        2. Let live connections finish on their own for up to ``timeout`` seconds
           (``None``: ``shutdown_timeout``).
        3. End input on the rest (``get()`` returns the records already read, then EOF) and give
           them ``stop_grace`` seconds to flush their replies and end.
        4. Close what remains and kill its greenlets; log how many were forced.

        Idempotent. From a connection's own greenlet it returns at once and the shutdown goes on
        in another greenlet (it cannot wait for the greenlet that called it).
        """
        if self._stop_requested:
            if getcurrent() not in self._clients:
                self._stopped.wait()
            return
        self._stop_requested = True
        if getcurrent() in self._clients:
            gevent.spawn(self._stop, timeout)
            return
        self._stop(timeout)

    def _drain(self) -> None:
        """drain_delay: turn not ready (readiness, the agent, systemd), serve on unchanged."""
        delay = self.drain_delay
        ops = self._operations
        if ops is not None:
            ops.phase = "draining"
            ops.drain_until = time.monotonic() + delay
        log.info("%s: draining for %g s before stopping (not ready; serving as before)",
                 self.name, delay)
        systemd.notify(f"STATUS={self.name}: draining for {delay:g} s, then stopping")
        self._skip_drain.wait(delay)

    def _stop(self, timeout: float | None) -> None:
        if self.drain_delay > 0 and self._started and not self._closed:
            self._drain()
        self._stopping = True
        self._life.stopping = True  # a client accepted from now on is refused
        if self._operations is not None:
            self._operations.phase = "stopping"
        systemd.notify("STOPPING=1", f"STATUS={self.name}: stopping")
        timeout = self.shutdown_timeout if timeout is None else float(timeout)
        start = time.monotonic()
        # Connections that end while we wait flush within what is left of the whole shutdown.
        self._life.grace_deadline = start + timeout + self.stop_grace
        try:
            if self._shedder is not None:
                self._shedder.close()
            for listener in self._listeners:
                listener.close()
            if self._clients:
                log.info("%s: stopping: %d connection(s) have %.1f s to finish",
                         self.name, len(self._clients), timeout)
            self._life.all_ended.wait(timeout)
            left = len(self._clients)
            if left:
                self._life.grace_deadline = time.monotonic() + self.stop_grace
                for conn in list(self._connections.values()):
                    conn.stop_input()
                # Connections bound their own flush and drain by the same deadline; the margin
                # lets one that uses all of it end by itself rather than be counted as forced.
                self._life.all_ended.wait(self.stop_grace + 0.25)
            if self._clients:
                self._force_close()
            # A second SIGINT may have forced the close while we waited above.
            forced = self._forced
            left = max(left, forced)
            log.info("%s: stopped in %.2f s; %d connection(s) ended by the shutdown, "
                     "%d forced closed", self.name, time.monotonic() - start, left, forced)
        finally:
            if self._operations is not None:
                self._operations.close()
            self._closed = True
            self._stopped.set()

    def _force_close(self) -> None:
        self._forced += len(self._clients)
        for conn in list(self._connections.values()):
            conn.close()
        arguments = [(glet, glet.args) for glet in self._clients]  # a dead greenlet drops them
        gevent.killall([glet for glet, _ in arguments], block=True, timeout=1.0)
        for glet, (sock, address) in arguments:
            if glet.dead and glet in self._clients:  # killed before it ran: its life never began
                self._life.discard_unstarted(glet, sock, address)

    # -- accepting (each accepted socket goes to ClientLife.accept) -----------------------------
    def _claim_ip(self, ip: str) -> bool:
        """Count one more connection from ``ip``; False (counted as refused) past the cap."""
        assert self.max_connections_per_ip is not None
        n = self._per_ip.get(ip, 0)
        if n >= self.max_connections_per_ip:
            self._count("refused_per_ip")
            return False
        self._per_ip[ip] = n + 1
        return True

    def _release_ip(self, ip: str) -> None:
        n = self._per_ip[ip] - 1
        if n:
            self._per_ip[ip] = n
        else:
            del self._per_ip[ip]

    def _listener_failed(self, listener: Listener, exc: OSError) -> None:
        self._count("listener_errors")
        listener.stop_accepting()
        try:
            self._on_error(self, exc)
        except Exception:
            log.exception("%s: error callback failed", self.name)

    def _report_error(self, conn: Connection, exc: BaseException) -> None:
        self._count("client_errors")
        try:
            self._on_client_error(conn, exc)
        except Exception:
            log.exception("%s: client_error callback failed on %r", self.name, conn)

    def _count(self, key: str) -> None:
        self._counters[key] = self._counters.get(key, 0) + 1


class _ServerHooks(ConnectionHooks):
    """How a server's connections and listeners reach it: statistics, client_error, output
    callbacks (ConnectionHooks); accepted sockets, the concurrency limit, listener errors
    (listeners.ListenerOwner); the live connections and listening sockets
    (shedding.ShedderOwner). Each hook is a bound method of the server or of its ClientLife,
    set per instance, so a hook costs no forwarding frame (accepting and closing pay them once
    per client)."""

    accept_client: Callable[[Any, Any], None]  # ListenerOwner: ClientLife.accept

    def __init__(self, server: Server) -> None:
        self.name = server.name
        self.output_callbacks = server._output_callbacks
        self.count = server._count  # type: ignore[method-assign]
        self.report_error = server._report_error  # type: ignore[method-assign]
        # closed: set by the server once its ClientLife exists (ClientLife.connection_closed)
        # accept_client: set by the server once its ClientLife exists (ClientLife.accept)
        self.full = server._full
        self.listener_failed = server._listener_failed
        # ShedderOwner (shedding.py)
        self.connections = server._connections
        self.at_capacity = server._at_capacity
        self.listening_sockets = server._listening_sockets


def serve_forever(handler: Callable[[Connection], Any] | None = None, **options: Any) -> None:
    """``Server(handler, **options).serve_forever()``; see ``help(greensrv.Server)``."""
    Server(handler, **options).serve_forever()


def _socket_from_fd(fd: int) -> Any:
    return socket.socket(fileno=fd)
