"""Server: a frozen configuration plus a life: listening, the client pool, the graceful stop.

The server checks its options once (``config.py``), opens its listening sockets
(``addresses.py``), lets clients in through its admission (``admission.py``) and hands each one
to the per-client life (``client_life.py``); its start, drain and stop are ``lifecycle.py``'s.
``serve_forever()`` runs it as this process's only server (``process.py``) or, with
``workers``, under a master (``workers.py``) that forks workers each running it over the
sockets the master opened.

Resource handling: the server owns its listening sockets (closed by ``stop()``) and every
client greenlet (in one set from accept to end, waited for or killed by ``stop()``). Each client's
socket is owned by its :class:`~greensrv.Connection`, which the client's greenlet always closes
in a ``finally``, and ``client_disconnected`` runs there too, exactly once.

Error handling: a handler, callback, filter or socket error reaches ``client_error`` and ends only
that client. A listener error reaches ``error``; accept errors caused by exhaustion (EMFILE…) are
retried with backoff and never stop the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import defaults
from .addresses import ListenSpec, format_address
from .admission import Admission
from .client_life import ClientLife
from .config import Option, ServerConfig
from .connection import Connection
from .connection_ends import ConnectionEnds
from .connection_hooks import ServerHooks
from .error_log import log_client_error, log_listener_error
from .filters import Filter
from .lifecycle import Lifecycle, RunningServer
from .listeners import Listener
from .options import check_int
from .process import brief_startup_errors, default_logging, serve_in_this_process
from .shutdown import Shutdown
from .statistics import Counters, Statistics
from .workers import Master

__all__ = ["Server", "serve_forever"]

log = logging.getLogger("greensrv")


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
      idle_greenlets=True       False: an idle client_input connection holds no greenlet,
                                each of its events runs in one taken for it
                                (``docs/idle-greenlets.md``)
      shedding=True             at concurrency with clients waiting, close the connections
                                making the least progress (``docs/overload.md``); one silent
                                for less than shed_min_age=0.1 s is spared, one that has
                                completed a record until idle for shed_proven_idle=5 s
      defer_accept=None         seconds: TCP_DEFER_ACCEPT, a TCP client reaches the server only
                                once it has sent something (not for server-speaks-first)
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
      backlog=1024              clients the kernel queues per listening socket until accepted
                                (capped by net.core.somaxconn)

    Operations (``docs/operations.md``), served by the process that owns the listeners:
      admin="HOST:PORT"         HTTP: /metrics (Prometheus), /livez, /readyz
      agent="HOST:PORT"         HAProxy's agent-check: "up N% ready" (free share) or "drain"
      drain_delay=0             seconds of not-ready-but-serving before a stop begins
      access_log=False          one line per ended connection to the "greensrv.access" logger,
                                in access_log_format="text" or "json"

    Use: ``serve_forever()`` (blocks; SIGINT/SIGTERM stop it gracefully), or ``start()`` and
    later ``stop()``, or ``with Server(...) as server:`` which starts it and stops it on exit.
    From a handler, ``conn.server`` is this object: ``conn.server.connections`` for broadcasts.
    ``connections`` holds this process's clients only: under workers each has its own, so a
    broadcast meant for every client goes through a shared store (examples/chat_cluster.py).
    """

    #: Seconds ``stop()`` gives connections still running after ``shutdown_timeout`` to see
    #: EOF, flush their queued output and end, before closing them and killing their greenlets.
    stop_grace: float = defaults.DEFAULT_STOP_GRACE

    def __init__(
        self,
        handler: Callable[[Connection], Any] | None = None,
        *,
        client_input: Callable[[Connection, Any], Any] | None = None,
        host: str | None = None,
        port: int | None = None,
        listen: Any = None,
        concurrency: int = defaults.DEFAULT_CONCURRENCY,
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
        high_mark: int = defaults.DEFAULT_HIGH_MARK,
        low_mark: int = defaults.DEFAULT_LOW_MARK,
        client_high: Callable[[Connection], Any] | None = None,
        client_low: Callable[[Connection], Any] | None = None,
        started: Callable[[Server], Any] | None = None,
        error: Callable[[Server, BaseException], Any] | None = None,
        shutdown_timeout: float = defaults.DEFAULT_SHUTDOWN_TIMEOUT,
        output_limit: int = defaults.DEFAULT_OUTPUT_LIMIT,
        idle_timeout: float | None = None,
        ssl_context: Any = None,
        handshake_timeout: float = defaults.DEFAULT_HANDSHAKE_TIMEOUT,
        record_timeout: float | None = defaults.DEFAULT_RECORD_TIMEOUT,
        record_min_rate: float | None = defaults.DEFAULT_RECORD_MIN_RATE,
        record_grace: float = defaults.DEFAULT_RECORD_GRACE,
        record_start_timeout: float | None = None,
        shedding: bool = True,
        shed_min_age: float = defaults.DEFAULT_SHED_MIN_AGE,
        shed_proven_idle: float = defaults.DEFAULT_SHED_PROVEN_IDLE,
        defer_accept: float | None = None,
        max_connections_per_ip: int | None = None,
        proxy_protocol: str | None = None,
        proxy_trusted: Iterable[Any] = defaults.DEFAULT_PROXY_TRUSTED,
        proxy_timeout: float = defaults.DEFAULT_PROXY_TIMEOUT,
        name: str = defaults.DEFAULT_NAME,
        workers: int | None = None,
        reuse_port: bool = False,
        worker_timeout: float = defaults.DEFAULT_WORKER_TIMEOUT,
        backlog: int = defaults.DEFAULT_BACKLOG,
        admin: str | None = None,
        agent: str | None = None,
        drain_delay: float = defaults.DEFAULT_DRAIN_DELAY,
        access_log: bool = False,
        access_log_format: str = defaults.DEFAULT_ACCESS_LOG_FORMAT,
        idle_greenlets: bool = defaults.DEFAULT_IDLE_GREENLETS,
    ) -> None:
        self.config = ServerConfig.from_options(
            {k: v for k, v in locals().items() if k not in ("self", "__class__")})
        self._build()

    @classmethod
    def from_config(cls, config: ServerConfig) -> Server:
        """A server of an already checked configuration (e.g. ``other.config.replace(...)``)."""
        server = cls.__new__(cls)
        server.config = config
        server._build()
        return server

    def _build(self) -> None:
        config = self.config
        self._on_client_error = config.client_error or log_client_error
        self._on_error = config.error or log_listener_error
        self._connections: dict[int, Connection] = {}
        self._counters = Counters()
        self._hooks = ServerHooks(config.name, config.output_callbacks, self._counters.count,
                                  self._report_error, self._listener_failed, self._connections,
                                  self._listening_sockets)
        self._admission = Admission(config.concurrency, config.max_connections_per_ip,
                                    self._counters, config.shed_policy, self._hooks,
                                    config.name)
        self._life = ClientLife(config, self._hooks, self._admission, self._connections,
                                self._counters, self)
        #: Each client's greenlet from accept until its end (ClientLife.spawn): what counts
        #: toward concurrency, what stop() waits for and what a forced stop kills.
        self._clients = self._admission.clients
        self._shutdown = Shutdown(config.name, self._admission, self._life, self._connections)
        self._hooks.closed = self._life.connection_closed  # type: ignore[method-assign]
        self._hooks.accept_client = self._life.accept
        # Counts how clients ended (metrics) and writes the connection log; None when neither
        # is asked for, so a client's end costs nothing more.
        ends = (ConnectionEnds(config.access_log_format)
                if config.admin is not None or config.access_log_format else None)
        self._life.ends = ends
        #: Its listeners, start, drain and stop, and its operations (``lifecycle.py``).
        self._lifecycle = Lifecycle(self, self._hooks, self._admission, self._shutdown, ends)

    # -- the options, read as attributes -------------------------------------------------------
    name: str = Option()  # type: ignore[assignment]
    workers: int | None = Option()  # type: ignore[assignment]
    reuse_port: bool = Option()  # type: ignore[assignment]
    worker_timeout: float = Option()  # type: ignore[assignment]
    backlog: int = Option()  # type: ignore[assignment]
    shutdown_timeout: float = Option()  # type: ignore[assignment]
    ssl_context: Any = Option()
    max_connections_per_ip: int | None = Option()  # type: ignore[assignment]
    defer_accept: float | None = Option()  # type: ignore[assignment]
    admin: str | None = Option()  # type: ignore[assignment]
    agent: str | None = Option()  # type: ignore[assignment]
    drain_delay: float = Option()  # type: ignore[assignment]
    client_shutdown_on_error: bool = Option()  # type: ignore[assignment]
    idle_greenlets: bool = Option()  # type: ignore[assignment]
    #: The bounds every connection of this server enforces, checked once.
    limits = Option()
    high_mark: int = Option("limits.high_mark")  # type: ignore[assignment]
    low_mark: int = Option("limits.low_mark")  # type: ignore[assignment]
    output_limit: int = Option("limits.output_limit")  # type: ignore[assignment]
    idle_timeout: float | None = Option("limits.idle_timeout")  # type: ignore[assignment]
    handshake_timeout: float = Option("limits.handshake_timeout")  # type: ignore[assignment]
    record_timeout: float | None = Option("limits.record_timeout")  # type: ignore[assignment]

    @property
    def concurrency(self) -> int:
        """The connection limit now (``set_concurrency`` changes it)."""
        return self._admission.concurrency

    @property
    def options(self) -> dict[str, Any]:
        """The keyword options this server was made with (``config.options``)."""
        return dict(self.config.options)

    @property
    def listen_specs(self) -> list[ListenSpec]:
        """Where ``start()`` will listen, parsed: one spec per ``listen`` entry."""
        return list(self.config.listen)

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Block until ``stop()`` has finished; False if ``timeout`` seconds passed first."""
        return bool(self._lifecycle.stopped.wait(timeout))

    @property
    def started(self) -> bool:
        """True once listening, until stopped."""
        return self._lifecycle.started and not self._lifecycle.closed

    @property
    def closed(self) -> bool:
        """True once ``stop()`` has finished."""
        return self._lifecycle.closed

    @property
    def address(self) -> Any:
        """The first bound address, e.g. ``("127.0.0.1", 40123)``."""
        addresses = self._lifecycle.addresses
        return addresses[0] if addresses else None

    @property
    def addresses(self) -> list[Any]:
        """Every bound address: ``(host, port)`` for TCP (IPv6 too), the path for unix."""
        return self._lifecycle.addresses

    @property
    def connections(self) -> list[Connection]:
        """The live connections, from just before client_connected until after disconnected.

        Per process: under ``--workers`` each worker sees only its own clients."""
        return list(self._connections.values())

    def statistics(self) -> Statistics:
        """A frozen snapshot of what the server is doing and why clients were dropped."""
        live = [c for c in self._connections.values() if not c.closed]  # closed: counted below
        return self._counters.snapshot(
            accepting=self.started and not self._admission.full(),
            live_connections=len(self._clients), pool_free=self._admission.free(),
            bytes_in=self._life.bytes_in_closed + sum(conn.bytes_in for conn in live),
            bytes_out=self._life.bytes_out_closed + sum(conn.bytes_out for conn in live))

    def _listening_sockets(self) -> list[Any]:
        return [listener.socket for listener in self._lifecycle.listeners]

    def __repr__(self) -> str:
        lifecycle = self._lifecycle
        state = "closed" if lifecycle.closed else "listening" if lifecycle.started else "new"
        where = " ".join(format_address(a) for a in self.addresses) or "-"
        return f"<Server {self.name!r} {state} {where} live={len(self._clients)}>"

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Bind every address and start accepting in the background."""
        if self.workers is not None:
            raise TypeError("start() cannot run a server with workers set: a master owns the "
                            "whole process; call serve_forever()")
        self._lifecycle.start()

    def serve_forever(self) -> None:
        """Start if needed and block until stopped.

        In the main thread, SIGTERM and SIGINT start a graceful ``stop()``; a second SIGINT
        (Ctrl-C) forces it, a second SIGTERM is logged and leaves the graceful stop running;
        SIGUSR1 reopens the log files (``greensrv.logfiles``). The previous signal handlers
        are restored before returning. With ``workers`` set this process becomes the master of
        that many forked workers (``docs/deploy.md``).

        When the application has not configured :mod:`logging`, INFO and above go to stderr
        while it runs. A start-up error (an address in use...) raises :class:`StartupError`;
        left uncaught, it ends the program with that one line on stderr, not a traceback.
        """
        if self.workers is not None:
            with default_logging(with_pid=True), brief_startup_errors():
                Master(self).run()
            return
        serve_in_this_process(RunningServer(self._lifecycle))

    def for_worker(self, sockets: Sequence[Any], max_accept: int | None = None,
                   accept_limit: int | None = None,
                   at_limit: Callable[[], None] | None = None) -> RunningServer:
        """This server as one worker of a master runs it (``servable.Servable``): over
        ``sockets`` the master opened, accepting at most ``max_accept`` clients per wake-up;
        ``accept_limit`` and ``at_limit``: see :meth:`RunningServer.count_accepts`. The
        server's options are left as they are; its ``start()`` serves on those sockets."""
        return RunningServer.for_worker(self._lifecycle, sockets, max_accept, accept_limit,
                                        at_limit)

    def __enter__(self) -> Server:
        """``with Server(...) as server:`` starts it (unless started) and stops it on exit."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def set_concurrency(self, n: int) -> None:
        """Change the connection limit live: 0 pauses accepting, -1 is unlimited."""
        check_int("concurrency", n, minimum=-1)
        self._admission.set_concurrency(n)

    def stop(self, timeout: float | None = None) -> None:
        """Graceful shutdown in phases (``docs/lifecycle.md``, ``shutdown.py``): the listeners
        close at once; live connections get ``timeout`` seconds (None: ``shutdown_timeout``) to
        finish by themselves, then the rest see EOF and get ``stop_grace`` seconds to flush
        their replies; whatever remains is closed and its greenlet killed.

        Idempotent. From a connection's own greenlet it returns at once and the shutdown goes on
        in another greenlet (it cannot wait for the greenlet that called it).
        """
        self._lifecycle.request_stop(timeout, drain=True)

    # -- what the listeners and connections report ---------------------------------------------
    def _listener_failed(self, listener: Listener, exc: OSError) -> None:
        self._counters.listener_errors += 1
        listener.stop_accepting()
        try:
            self._on_error(self, exc)
        except Exception:
            log.exception("%s: error callback failed", self.name)

    def _report_error(self, conn: Connection, exc: BaseException) -> None:
        self._counters.client_errors += 1
        try:
            self._on_client_error(conn, exc)
        except Exception:
            log.exception("%s: client_error callback failed on %r", self.name, conn)


def serve_forever(handler: Callable[[Connection], Any] | None = None, **options: Any) -> None:
    """``Server(handler, **options).serve_forever()``; see ``help(greensrv.Server)``."""
    Server(handler, **options).serve_forever()
