"""``greensrv.Client``: POE::Component::Client::TCP rebuilt on ``greensrv.connect``.

One greenlet owns the client's whole life: connect (``connect_error`` on failure), then
``connected``, the handler or ``server_input`` per record, a graceful finish and
``disconnected``, then, with ``retry``, a growing delay and the next attempt. Callbacks run in
that greenlet (output callbacks in the connection's own), so a blocking call there blocks only
this client. Errors in them reach ``server_error`` and end that connection, never the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import gevent
from gevent.event import Event

from .backoff import Backoff
from .connection import Connection, finish
from .dial import (
    Address,
    ClientHooks,
    PreConnect,
    describe_address,
    make_limits,
    open_connection,
    pick_filters,
)
from .errors import FilterError
from .filters import Filter

__all__ = ["Client"]

log = logging.getLogger("greensrv")


def _default_server_error(conn: Connection, exc: BaseException) -> None:
    log.error("%r: %s: %s", conn, type(exc).__name__, exc)


def _default_connect_error(client: Client, exc: BaseException) -> None:
    log.warning("%s: %s", client.name, exc)


class Client:
    """A connection to one server that a handler or callbacks drive, reconnecting on demand.

    See ``docs/client.md``. Exactly one of ``handler(conn)`` and ``server_input(conn,
    record)``. ``connected(conn, *client_args)`` and ``disconnected(conn)`` are called once per
    connection, ``connect_error(client, exc)`` once per failed attempt, ``server_error(conn,
    exc)`` for a socket, filter, handler or callback error. ``retry=None`` stops after the
    first connection ends or the first attempt fails (as POE); ``retry=Backoff(...)``
    reconnects after each.
    """

    def __init__(
        self,
        address: Address,
        *,
        handler: Callable[[Connection], Any] | None = None,
        server_input: Callable[[Connection, Any], Any] | None = None,
        connected: Callable[..., Any] | None = None,
        client_args: tuple[Any, ...] = (),
        connect_error: Callable[[Client, BaseException], Any] | None = None,
        disconnected: Callable[[Connection], Any] | None = None,
        server_error: Callable[[Connection, BaseException], Any] | None = None,
        server_flushed: Callable[[Connection], Any] | None = None,
        server_high: Callable[[Connection], Any] | None = None,
        server_low: Callable[[Connection], Any] | None = None,
        pre_connect: PreConnect | None = None,
        filter: Filter | None = None,
        input_filter: Filter | None = None,
        output_filter: Filter | None = None,
        connect_timeout: float | None = None,
        retry: Backoff | None = None,
        ssl_context: Any = None,
        server_hostname: str | None = None,
        source_address: Any = None,
        proxy_header: Any = None,
        name: str = "greensrv-client",
        **limits: Any,
    ) -> None:
        if (handler is None) == (server_input is None):
            raise TypeError("Client: give exactly one of handler and server_input")
        if retry is not None and not isinstance(retry, Backoff):
            raise TypeError(f"Client: retry must be a greensrv.Backoff or None, not "
                            f"{type(retry).__name__}")
        for option, value in (("handler", handler), ("server_input", server_input),
                              ("connected", connected), ("connect_error", connect_error),
                              ("disconnected", disconnected), ("server_error", server_error),
                              ("server_flushed", server_flushed), ("server_high", server_high),
                              ("server_low", server_low), ("pre_connect", pre_connect)):
            if value is not None and not callable(value):
                raise TypeError(f"Client: {option} must be callable, not "
                                f"{type(value).__name__}")
        self._templates = pick_filters(filter, input_filter, output_filter)
        self.limits = make_limits(limits)  # checked now, with errors naming the option
        self._address = address
        self._handler = handler
        self._server_input = server_input
        self._connected = connected
        self._client_args = tuple(client_args)
        self._connect_error = connect_error or _default_connect_error
        self._disconnected = disconnected
        self._server_error = server_error or _default_server_error
        self._output_callbacks = {k: v for k, v in (("flushed", server_flushed),
                                                    ("high", server_high),
                                                    ("low", server_low)) if v is not None}
        self._pre_connect = pre_connect
        self._connect_timeout = connect_timeout
        self.retry = retry
        self._tls = (ssl_context, server_hostname)
        self._source_address = source_address
        self._proxy_header = proxy_header
        self.name = name
        self._connection: Connection | None = None
        self._glet: gevent.Greenlet | None = None
        self._stopping = False
        self._connecting = False  # inside open_connection: stop() may interrupt it
        self._replace = False  # reconnect() or connect(address) asked for a new connection
        self._wake = Event()  # ends a wait between attempts early
        self._up = Event()  # set while a connection is live, and once the client has ended
        self._ended = Event()
        #: The last connect error, when the client ended without connecting.
        self.last_error: BaseException | None = None

    # -- public --------------------------------------------------------------------------------
    @property
    def address(self) -> Address:
        return self._address

    @property
    def connection(self) -> Connection | None:
        """The live Connection, or None between connections and after the client ended."""
        return self._connection

    def start(self) -> Client:
        """Start connecting in the client's own greenlet; returns at once (idempotent)."""
        if self._glet is None:
            self._glet = gevent.spawn(self._run)
            self._glet.name = self.name
        return self

    def stop(self) -> None:
        """End the client: the live connection is shut down gracefully (its queued output is
        sent), an attempt in progress is abandoned, no reconnection follows. Returns at once;
        ``join()`` waits for the end."""
        self._stopping = True
        self._wake.set()
        if self._connecting and self._glet is not None and self._glet is not gevent.getcurrent():
            self._glet.kill(block=False)  # its socket is closed as the GreenletExit unwinds
        conn = self._connection
        if conn is not None:
            conn.shutdown()
        if self._glet is None:
            self._ended.set()

    def reconnect(self) -> None:
        """Replace the connection now (no delay): the live one is shut down gracefully and
        ``disconnected`` is called for it; a wait between attempts ends at once."""
        self._replace = True
        self._wake.set()
        conn = self._connection
        if conn is not None:
            conn.shutdown()

    def connect(self, address: Address) -> None:
        """Switch to another server: ``reconnect()`` to ``address``."""
        self._address = address
        self.reconnect()

    def wait_connected(self, timeout: float | None = None) -> Connection:
        """Block until a connection is live and return it.

        Raises ``TimeoutError`` after ``timeout`` seconds, and ``ConnectionError`` if the
        client ends without one (``retry=None`` and the attempt failed, or ``stop()``).
        """
        if not self._up.wait(timeout):
            raise TimeoutError(f"{self.name}: not connected to "
                               f"{describe_address(self._address)} within {timeout:g} s")
        conn = self._connection
        if conn is None:
            raise ConnectionError(f"{self.name}: ended without a connection to "
                                  f"{describe_address(self._address)}"
                                  + (f" ({self.last_error})" if self.last_error else ""))
        return conn

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the client to end; True if it has."""
        if self._glet is None:
            return self._ended.is_set()
        return bool(self._ended.wait(timeout))

    def __enter__(self) -> Client:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.join()

    def __repr__(self) -> str:
        state = ("ended" if self._ended.is_set() else
                 "connected" if self._connection is not None else "connecting")
        return f"<Client {self.name} {describe_address(self._address)} {state}>"

    # -- the client's greenlet ------------------------------------------------------------------
    def _run(self) -> None:
        delays: Iterator[float] | None = None
        try:
            while not self._stopping:
                self._replace = False
                self._wake.clear()
                conn = self._attempt()
                if conn is not None:
                    began = time.monotonic()
                    self._live(conn)
                    retry = self.retry
                    if retry is not None and time.monotonic() - began >= retry.reset_after:
                        delays = None
                if self._stopping:
                    break
                if self._replace:
                    continue
                if self.retry is None:
                    break
                if delays is None:
                    delays = self.retry.delays()
                self._wake.wait(next(delays))
        finally:
            self._connection = None
            self._ended.set()
            self._up.set()  # wait_connected() returns (and raises) once ended

    def _attempt(self) -> Connection | None:
        in_template, out_template = self._templates
        in_filter = in_template.clone()
        out_filter = in_filter if out_template is in_template else out_template.clone()
        hooks = ClientHooks(self._output_callbacks, self._report_error)
        ssl_context, server_hostname = self._tls
        self._connecting = True
        try:
            conn = open_connection(
                self._address, in_filter=in_filter, out_filter=out_filter,
                timeout=self._connect_timeout, ssl_context=ssl_context,
                server_hostname=server_hostname, source_address=self._source_address,
                proxy_header=self._proxy_header, limits=self.limits, hooks=hooks,
                pre_connect=self._pre_connect)
        except Exception as exc:
            self.last_error = exc
            try:
                self._connect_error(self, exc)
            except Exception:
                log.exception("%s: connect_error callback failed", self.name)
            return None
        finally:
            self._connecting = False
        self.last_error = None
        return conn

    def _live(self, conn: Connection) -> None:
        """One connection, connected to disconnected; closes it whatever happens."""
        self._connection = conn
        self._up.set()
        try:
            if self._stopping or self._replace:
                conn.shutdown()  # stop() or reconnect() came during the connect
            try:
                if self._connected is not None:
                    self._connected(conn, *self._client_args)
                if self._handler is not None:
                    self._handler(conn)
                else:
                    self._input_loop(conn)
            except Exception as exc:
                self._report_error(conn, exc)
            error = conn.error
            if error is not None:
                conn.error = None
                self._report_error(conn, error)
            finish(conn, None)
        finally:
            conn.close()
            self._up.clear()
            self._connection = None
            if self._disconnected is not None:
                try:
                    self._disconnected(conn)
                except Exception as exc:
                    self._report_error(conn, exc)

    def _input_loop(self, conn: Connection) -> None:
        server_input = self._server_input
        assert server_input is not None
        for record in conn:
            server_input(conn, record)

    def _report_error(self, conn: Connection, exc: BaseException) -> None:
        if isinstance(exc, FilterError):
            log.debug("%s: %r sent bad input: %s", self.name, conn, exc)
        try:
            self._server_error(conn, exc)
        except Exception:
            log.exception("%s: server_error callback failed on %r", self.name, conn)
