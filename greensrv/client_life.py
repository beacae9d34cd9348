"""The whole life of one accepted client, in one function: :meth:`ClientLife.serve`.

accept → (PROXY header) → ``client_pre_connect`` → TLS handshake → :class:`~greensrv.Connection`
→ ``client_connected`` → handler or ``client_input`` per record → graceful finish → close and
``client_disconnected``.

Resource handling: ``serve`` runs in the client's own greenlet and owns every socket it sees —
the accepted one, the one ``client_pre_connect`` returns instead, the TLS wrapper, and the one
``start_tls`` puts on the connection — and closes each in its single ``finally``, whatever
happens. ``client_disconnected`` runs there too, exactly once for every connection that reached
``client_connected``'s turn.

Under ``idle_greenlets=False`` the life leaves its greenlet after ``client_connected`` and the
first read: the connection's events go on in greenlets taken for each (``event_life.py``), and
:meth:`ClientLife.conclude` runs the same end (the graceful finish, then the ``finally``) in
the greenlet of its last event.

Error handling: an exception from the handler, a callback or a filter, and an error the
connection deferred (a socket error, a timeout, a slow reader), reach ``client_error`` through
the hooks and end this client alone.
"""

from __future__ import annotations

import logging
import time
from _socket import socket as _OSSocket
from itertools import count
from typing import Any

from gevent import Greenlet, getcurrent
from gevent.event import Event

from ._accelerate import accelerate
from .admission import Admission
from .config import ServerConfig
from .connection import (
    Connection,
    ConnectionHooks,
    accepted_at,
    attach,
    cooperative_socket,
    finish,
    how_input_ended,
)
from .connection_ends import ConnectionEnds, error_word
from .errors import FilterError, TLSError
from .event_life import EventClient, EventLife
from .proxy import ProxyHeader
from .proxy_io import client_address, receive_proxy_header
from .statistics import Counters
from .tls import wrap_server_socket
from .transport import close_quietly, describe_handshake_failure, is_tls_socket

__all__ = ["ClientLife"]

log = logging.getLogger("greensrv")

_monotonic = time.monotonic


class ClientGreenlet(Greenlet):
    """A client's greenlet. It keeps no spawning stack: that would always be the listener's
    accept loop, so it would tell nothing, and recording it (gevent's default, ten frames)
    was about 9,000 instructions of each accepted connection."""

    __slots__ = ()
    spawning_stack_limit = 0


class ClientLife:
    """What the server decided at construction about each client's life, and the life itself.

    The server makes one and hands it each accepted socket (:meth:`spawn`); :meth:`serve` runs
    in a new greenlet per socket. ``greenlets`` holds each of those greenlets from accept until
    its end, handshake and final drain included: exactly what counts toward ``concurrency``.
    ``all_ended`` is set while it is empty. ``connections`` is the server's registry of live
    connections (``Server.connections``).

    It asks the server's :class:`~greensrv.admission.Admission` whether a client may come in
    (``stopping``, the per-IP counts), how long a stop's grace lasts (``grace_deadline``) and
    whether accepting may resume as a client ends (``capacity_freed``); it never writes them.
    """

    def __init__(self, config: ServerConfig, hooks: ConnectionHooks, admission: Admission,
                 connections: dict[int, Connection], counters: Counters, server: Any) -> None:
        self.name = config.name
        self.handler = config.handler
        self.client_input = config.client_input
        self.shutdown_on_error = config.client_shutdown_on_error
        self.pre_connect = config.client_pre_connect
        self.on_connected = config.client_connected
        self.client_args = config.client_args
        self.on_disconnected = config.client_disconnected
        self.make_in = config.make_in
        self.make_out = config.make_out
        self.ssl_context = config.ssl_context
        self.limits = config.limits
        self.hooks = hooks
        #: Who may come in (the limit, the per-IP counts, the stop): asked, never written.
        self.admission = admission
        self.connections = connections
        self.counters = counters  # the server's statistics counters
        self.server = server
        #: The PROXY protocol settings, or None; with them, max_connections_per_ip is counted
        #: by the client's address the header names.
        self.proxy = config.proxy
        per_ip = config.max_connections_per_ip is not None
        self.claims_ip = per_ip
        #: max_connections_per_ip without PROXY: the accepted peer's IP is claimed at accept,
        #: and the life releases it at its end.
        self.claimed_at_accept = per_ip and config.proxy is None
        #: Something reads or replaces the accepted socket before the connection does (PROXY,
        #: client_pre_connect, TLS): they are given a gevent socket. Otherwise the connection
        #: runs on the listener's OS-level socket, and ``conn.socket`` makes one if asked.
        self.cooperative = (config.proxy is not None or config.client_pre_connect is not None
                            or config.ssl_context is not None)
        self.ids = count(1)
        self.greenlets: set[Greenlet] = admission.clients
        self.all_ended = Event()
        self.all_ended.set()
        self._serve = self.serve  # bound once: each client's greenlet runs this one object
        #: Bytes read and sent by the connections closed so far (the server's statistics add
        #: the live ones).
        self.bytes_in_closed = 0
        self.bytes_out_closed = 0
        #: Told how each client ended (metrics, the connection log); None costs nothing more.
        self.ends: ConnectionEnds | None = None
        #: idle_greenlets=False: the connections' events after client_connected, greenlet-free
        #: between events (event_life.py); None: the client's greenlet runs them all.
        self.events: EventLife | None = None
        if not config.idle_greenlets:
            assert self.client_input is not None
            self.events = EventLife(self.client_input, self.shutdown_on_error,
                                    hooks.report_error, self.greenlets, self.conclude)

    def stopped(self) -> None:
        """The server has stopped (every client has ended): keep no idle greenlet."""
        if self.events is not None:
            self.events.release()

    def connection_closed(self, conn: Connection) -> None:
        """``ConnectionHooks.closed`` for the server's connections (compiled: no Python frame
        per client): their byte counts join the totals."""
        self.bytes_in_closed += conn.bytes_in
        self.bytes_out_closed += conn.bytes_out

    def accept(self, sock: Any, address: Any) -> None:
        """A listener's accepted socket, in the hub: start its life, or refuse it and close it
        (a stop has begun, or max_connections_per_ip without PROXY: refused before any greenlet
        or object is made). Compiled: no Python frame per client."""
        self.counters.accepted += 1
        admission = self.admission
        if admission.stopping:  # accepted as the stop began, before the listeners closed
            self._refused_at_accept(sock, address, "stopped")
            return
        if (self.claimed_at_accept and isinstance(address, tuple)
                and not admission.claim_ip(address[0])):
            self._refused_at_accept(sock, address, "refused")
            return
        self.spawn(sock, address)  # the life releases the IP and may resume accepting

    def _refused_at_accept(self, sock: Any, address: Any, word: str) -> None:
        ends = self.ends
        if ends is not None:
            local = None
            if ends.log_format is not None:
                try:
                    local = sock.getsockname()
                except OSError:
                    pass
            ends.ended(word, address, local, None, _monotonic(), 0, 0)
        close_quietly(sock)

    def spawn(self, sock: Any, address: Any) -> None:
        """Start the life of an accepted socket in a new greenlet, counted in ``greenlets``."""
        glet = ClientGreenlet(self._serve, sock, address)
        greenlets = self.greenlets
        if not greenlets:
            self.all_ended.clear()
        greenlets.add(glet)
        glet.start()

    def discard_unstarted(self, glet: Greenlet, sock: Any, address: Any) -> None:
        """Forget a greenlet killed before it ran :meth:`serve` with ``sock`` and ``address``
        (its arguments, read before the kill: a dead greenlet drops them): close the socket
        its life never saw."""
        close_quietly(sock)
        if self.claimed_at_accept and isinstance(address, tuple):
            self.admission.release_ip(address[0])
        self._ended(glet)

    def _ended(self, glet: Any) -> None:
        greenlets = self.greenlets
        greenlets.discard(glet)
        if not greenlets:
            self.all_ended.set()
        freed = self.admission.capacity_freed
        if freed is not None:
            freed()

    def serve(self, sock: Any, address: Any) -> None:
        """The life of one client, in its own greenlet; closes every socket it sees."""
        if self.cooperative and type(sock) is _OSSocket:
            sock = cooperative_socket(sock)
        accepted = sock
        others: list[Any] | None = None  # what client_pre_connect or TLS put in its place
        conn: Connection | None = None
        connected = False
        detached = False  # idle_greenlets=False: the life goes on without this greenlet
        hooks = self.hooks
        header: ProxyHeader | None = None
        claimed: str | None = None
        if self.claimed_at_accept and isinstance(address, tuple):
            claimed = address[0]
        # How it ended, for self.ends: set where it is known, else asked of the connection.
        ends = self.ends
        ending: Any = (None if ends is None else
                       _Ending(_monotonic(), address, accepted, ends.log_format is not None))
        try:
            if self.proxy is not None:  # the PROXY header comes before everything else
                header = receive_proxy_header(sock, address, self.proxy, self.name, hooks.count)
                if header is None:
                    if ending is not None:
                        ending.word = "refused"
                    return
                address = client_address(header, address)
                if ending is not None:
                    ending.client = address
                if self.claims_ip and isinstance(address, tuple):
                    if not self.admission.claim_ip(address[0]):
                        if ending is not None:
                            ending.word = "refused"
                        return
                    claimed = address[0]
            if self.pre_connect is not None:
                sock = self._pre_connect(sock, address)
                if sock is None:
                    if ending is not None:
                        ending.word = "refused"
                    hooks.count("refused_pre_connect")
                    return
                others = [sock] if others is None else [*others, sock]
            if self.ssl_context is not None:
                sock = wrap_server_socket(sock, self.ssl_context)
                others = [sock] if others is None else [*others, sock]
            in_filter = self.make_in()
            out_filter = self.make_out() if self.make_out is not None else in_filter
            conn = Connection(sock, address, next(self.ids), in_filter, out_filter, self.limits,
                              hooks, server=self.server)
            conn.proxy = header
            if ending is not None and ending.logged:
                ending.local = conn.local_address  # for the log, before the socket can close
            if others is not None and not self._handshake(conn):
                if ending is not None:
                    ending.word = "error"
                return
            attach(conn)
            self.connections[conn.id] = conn
            connected = True
            # client_connected, then the handler or client_input per record, errors reported:
            # inline, not a method, so that a parked client's saved stack holds one frame less.
            try:
                if self.on_connected is not None:
                    self.on_connected(conn, *self.client_args)
                if self.handler is not None:
                    self.handler(conn)
                elif self.events is None:
                    self._input_loop(conn)
                elif self.events.adopt(conn, (accepted, others, claimed, ending)):
                    detached = True  # greenlet-free from now on: conclude() ends it
                    return
            except Exception as exc:
                self._failed(conn, exc, ending)
            self._wind_up(conn, ending)
        finally:
            if not detached:
                self._end(accepted, others, conn, claimed, connected, ending)

    def _failed(self, conn: Connection, exc: Exception, ending: Any) -> None:
        """The handler, a callback or the filter raised ``exc``: report it."""
        if isinstance(exc, FilterError):
            self.hooks.count("closed_filter_error")
        if ending is not None:
            ending.word = "error"
        self.hooks.report_error(conn, exc)

    def _wind_up(self, conn: Connection, ending: Any) -> None:
        """The application is done with ``conn``: report its deferred error, then finish it
        gracefully (flush, FIN, drain) within a stop's grace."""
        error = conn.error
        if ending is not None and ending.word is None:
            ending.word = self._end_word(conn, error)
        if error is not None:
            conn.error = None
            self.hooks.report_error(conn, error)
        finish(conn, self.admission.grace_deadline)

    def conclude(self, client: EventClient, exc: BaseException | None, killed: bool) -> None:
        """The end of a greenlet-free connection (idle_greenlets=False), in the greenlet of
        its last event: what serve() does once the input loop is over (``exc``: what ended
        it; ``killed``: a forced stop, no graceful finish), then its ``finally``."""
        conn = client.conn
        accepted, others, claimed, ending = client.rest
        try:
            if not killed:
                if isinstance(exc, Exception):
                    self._failed(conn, exc, ending)
                self._wind_up(conn, ending)
        finally:
            self._end(accepted, others, conn, claimed, True, ending)

    def _end(self, accepted: Any, others: list[Any] | None, conn: Connection | None,
             claimed: str | None, connected: bool, ending: Any) -> None:
        """serve()'s finally, in a frame of its own: serve's stays small, and a parked client
        greenlet saves its stack, serve's frame included, for as long as it waits."""
        try:
            if ending is not None:
                self._tell_ends(ending, conn)
            if claimed is not None:
                self.admission.release_ip(claimed)
            if conn is not None:
                conn.close()  # idempotent; closes conn.socket, start_tls's replacement included
            # Closed already, or given to another object (a TLS wrapper, conn.socket): closing
            # again is harmless.
            close_quietly(accepted)
            for each in others or ():
                close_quietly(each)
            if connected:
                assert conn is not None
                try:
                    if self.on_disconnected is not None:
                        self.on_disconnected(conn)
                except Exception as exc:
                    self.hooks.report_error(conn, exc)
                finally:
                    del self.connections[conn.id]
        finally:
            self._ended(getcurrent())  # the last step: it may resume accepting

    def _end_word(self, conn: Connection, error: BaseException | None) -> str:
        """How a connection whose handler (or client_input loop) returned ended, asked before
        its graceful finish (which reads to the peer's EOF); ``error``: its deferred error."""
        if error is not None:
            return error_word(error)
        how = how_input_ended(conn)
        if how == "idle":
            return "timeout"  # idle_timeout ended it (not an error: nothing was reported)
        if how == "peer":
            return "closed"
        return "stopped" if self.admission.stopping else "done"

    def _tell_ends(self, ending: _Ending, conn: Connection | None) -> None:
        """Report the end (before close: the local address is still there to read)."""
        ends = self.ends
        assert ends is not None
        word = ending.word
        if word is None:  # killed (a forced stop) or an exception out of greensrv itself
            word = "stopped" if self.admission.stopping else "error"
        if conn is not None:
            ends.ended(word, conn.remote_address, ending.local, conn.id, accepted_at(conn),
                       conn.bytes_in, conn.bytes_out)
            return
        local = None
        if ending.logged:
            try:
                local = ending.socket.getsockname()
            except OSError:
                pass
        ends.ended(word, ending.client, local, None, ending.started, 0, 0)

    def _pre_connect(self, sock: Any, address: Any) -> Any:
        """client_pre_connect's socket (the same, another, or None to refuse the client)."""
        assert self.pre_connect is not None
        try:
            return self.pre_connect(sock, address)
        except Exception:
            log.exception("%s: client_pre_connect failed for %r", self.name, address)
            return None

    def _handshake(self, conn: Connection) -> bool:
        """Complete a TLS handshake (if any: TLS, or client_pre_connect's socket) within
        handshake_timeout; False if it failed."""
        sock = conn.socket
        if is_tls_socket(sock) and not _handshake_done(sock):
            sock.settimeout(self.limits.handshake_timeout)
            try:
                sock.do_handshake()
            except Exception as exc:
                self.hooks.count("tls_failures")
                self.hooks.report_error(conn, TLSError(
                    describe_handshake_failure(conn.remote_address, exc)))
                return False
        return True

    def _input_loop(self, conn: Connection) -> None:
        """POE's default acceptor: client_input for each record until EOF."""
        client_input = self.client_input
        assert client_input is not None
        shutdown_on_error = self.shutdown_on_error
        report_error = self.hooks.report_error
        # `for record in conn`, not get() in a plain loop: Connection.__next__ hands out the
        # records a read parsed in bulk without a get() each.
        for record in conn:
            try:
                client_input(conn, record)
            except Exception as exc:
                if shutdown_on_error:
                    raise
                report_error(conn, exc)


class _Ending:
    """What a client's life knows of its end before a Connection exists (or to override it)."""

    __slots__ = ("client", "local", "logged", "socket", "started", "word")

    def __init__(self, started: float, client: Any, sock: Any, logged: bool) -> None:
        self.started = started
        self.client = client
        self.socket = sock
        self.logged = logged  # the connection log is on: it wants the local address
        self.local: Any = None
        self.word: str | None = None


def _handshake_done(sock: Any) -> bool:
    try:
        return sock.version() is not None
    except (ValueError, AttributeError, OSError):
        return False


# Compiled plainly (no .pxd): the callback style's per-record loop runs in C.
accelerate(globals(), "greensrv._c_client_life")
