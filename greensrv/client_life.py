"""The whole life of one accepted client, in one function: :meth:`ClientLife.serve`.

accept → (PROXY header) → ``client_pre_connect`` → TLS handshake → :class:`~greensrv.Connection`
→ ``client_connected`` → handler or ``client_input`` per record → graceful finish → close and
``client_disconnected``.

Resource handling: ``serve`` runs in the client's own greenlet and owns every socket it sees —
the accepted one, the one ``client_pre_connect`` returns instead, the TLS wrapper, and the one
``start_tls`` puts on the connection — and closes each in its single ``finally``, whatever
happens. ``client_disconnected`` runs there too, exactly once for every connection that reached
``client_connected``'s turn.

Error handling: an exception from the handler, a callback or a filter, and an error the
connection deferred (a socket error, a timeout, a slow reader), reach ``client_error`` through
the hooks and end this client alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from itertools import count
from typing import Any

from gevent import Greenlet, getcurrent
from gevent.event import Event

from ._accelerate import accelerate
from .connection import Connection, ConnectionHooks
from .connection_ends import ConnectionEnds, end_word
from .errors import FilterError, TLSError
from .filters import Filter
from .limits import Limits
from .proxy import ProxyHeader
from .proxy_io import ProxySettings, client_address, receive_proxy_header
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

    The server sets two fields as it goes: ``grace_deadline``, the end of a running shutdown's
    grace (None until a stop), and ``capacity_freed``, called as each client ends while
    accepting is paused at the concurrency limit (None otherwise, so that an unlimited server
    pays no call per client).
    """

    def __init__(
        self,
        *,
        name: str,
        handler: Callable[[Connection], Any] | None,
        client_input: Callable[[Connection, Any], Any] | None,
        shutdown_on_error: bool,
        pre_connect: Callable[[Any, Any], Any] | None,
        on_connected: Callable[..., Any] | None,
        client_args: tuple[Any, ...],
        on_disconnected: Callable[[Connection], Any] | None,
        make_in: Callable[[], Filter],
        make_out: Callable[[], Filter] | None,
        ssl_context: Any,
        limits: Limits,
        hooks: ConnectionHooks,
        connections: dict[int, Connection],
        counters: dict[str, int],
        server: Any,
        proxy: ProxySettings | None = None,
        claim_ip: Callable[[str], bool] | None = None,
        release_ip: Callable[[str], None] | None = None,
        claimed_at_accept: bool = False,
    ) -> None:
        self.name = name
        self.handler = handler
        self.client_input = client_input
        self.shutdown_on_error = shutdown_on_error
        self.pre_connect = pre_connect
        self.on_connected = on_connected
        self.client_args = client_args
        self.on_disconnected = on_disconnected
        self.make_in = make_in
        self.make_out = make_out
        self.ssl_context = ssl_context
        self.limits = limits
        self.hooks = hooks
        self.connections = connections
        self.counters = counters  # the server's statistics counters
        self.server = server
        #: The PROXY protocol settings, or None; with them, ``claim_ip`` counts
        #: max_connections_per_ip by the client's address the header names.
        self.proxy = proxy
        self.claim_ip = claim_ip
        self.release_ip = release_ip
        #: The server counted the accepted peer's IP (max_connections_per_ip without PROXY):
        #: the life releases it at its end.
        self.claimed_at_accept = claimed_at_accept
        self.ids = count(1)
        self.greenlets: set[Greenlet] = set()
        self.all_ended = Event()
        self.all_ended.set()
        self.grace_deadline: float | None = None
        self.stopping = False
        self.capacity_freed: Callable[[], None] | None = None
        self._serve = self.serve  # bound once: each client's greenlet runs this one object
        #: Bytes read and sent by the connections closed so far (the server's statistics add
        #: the live ones).
        self.bytes_in_closed = 0
        self.bytes_out_closed = 0
        #: Told how each client ended (metrics, the connection log); None costs nothing more.
        self.ends: ConnectionEnds | None = None

    def connection_closed(self, conn: Connection) -> None:
        """``ConnectionHooks.closed`` for the server's connections (compiled: no Python frame
        per client): their byte counts join the totals."""
        self.bytes_in_closed += conn.bytes_in
        self.bytes_out_closed += conn.bytes_out

    def accept(self, sock: Any, address: Any) -> None:
        """A listener's accepted socket, in the hub: start its life, or refuse it and close it
        (a stop has begun, or max_connections_per_ip without PROXY: refused before any greenlet
        or object is made). Compiled: no Python frame per client."""
        counters = self.counters
        counters["accepted"] = counters.get("accepted", 0) + 1
        if self.stopping:  # accepted as the stop began, before the listeners closed
            self._refused_at_accept(sock, address, "stopped")
            return
        if self.claimed_at_accept and isinstance(address, tuple):
            assert self.claim_ip is not None
            if not self.claim_ip(address[0]):
                self._refused_at_accept(sock, address, "refused")
                return
        self.spawn(sock, address)  # the life releases the IP and may resume accepting

    def _refused_at_accept(self, sock: Any, address: Any, word: str) -> None:
        ends = self.ends
        if ends is not None:
            try:
                local = sock.getsockname()
            except OSError:
                local = None
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
            assert self.release_ip is not None
            self.release_ip(address[0])
        self._ended(glet)

    def _ended(self, glet: Any) -> None:
        greenlets = self.greenlets
        greenlets.discard(glet)
        if not greenlets:
            self.all_ended.set()
        freed = self.capacity_freed
        if freed is not None:
            freed()

    def serve(self, sock: Any, address: Any) -> None:
        """The life of one client, in its own greenlet; closes every socket it sees."""
        accepted = sock
        others: list[Any] | None = None  # what client_pre_connect or TLS put in its place
        conn: Connection | None = None
        connected = False
        hooks = self.hooks
        header: ProxyHeader | None = None
        claimed: str | None = None
        if self.claimed_at_accept and isinstance(address, tuple):
            claimed = address[0]
        # How it ended, for self.ends: set where it is known, else asked of the connection.
        ending: Any = (None if self.ends is None else
                       _Ending(_monotonic(), address, accepted))
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
                if self.claim_ip is not None and isinstance(address, tuple):
                    if not self.claim_ip(address[0]):
                        if ending is not None:
                            ending.word = "refused"
                        return
                    claimed = address[0]
            if self.pre_connect is not None:
                sock = self._pre_connect(sock, address)
                if sock is None:
                    hooks.count("refused_pre_connect")
                    if ending is not None:
                        ending.word = "refused"
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
            if ending is not None:
                ending.local = conn.local_address  # before anything can close the socket
            if not self._handshake(conn):
                if ending is not None:
                    ending.word = "error"
                return
            conn.attach()
            self.connections[conn.id] = conn
            connected = True
            # client_connected, then the handler or client_input per record, errors reported:
            # inline, not a method, so that a parked client's saved stack holds one frame less.
            try:
                if self.on_connected is not None:
                    self.on_connected(conn, *self.client_args)
                if self.handler is not None:
                    self.handler(conn)
                else:
                    self._input_loop(conn)
            except Exception as exc:
                if isinstance(exc, FilterError):
                    hooks.count("closed_filter_error")
                if ending is not None:
                    ending.word = "error"
                hooks.report_error(conn, exc)
            error = conn.error
            if ending is not None and ending.word is None:
                ending.word = end_word(conn, error, self.stopping)
            if error is not None:
                conn.error = None
                hooks.report_error(conn, error)
            conn.finish(self.grace_deadline)
        finally:
            self._end(accepted, others, conn, claimed, connected, ending)

    def _end(self, accepted: Any, others: list[Any] | None, conn: Connection | None,
             claimed: str | None, connected: bool, ending: Any) -> None:
        """serve()'s finally, in a frame of its own: serve's stays small, and a parked client
        greenlet saves its stack, serve's frame included, for as long as it waits."""
        try:
            if ending is not None:
                self._tell_ends(ending, conn)
            if claimed is not None:
                assert self.release_ip is not None
                self.release_ip(claimed)
            closed = None
            if conn is not None:
                conn.close()  # idempotent; closes conn.socket, start_tls's replacement included
                closed = conn.socket
            if accepted is not closed:
                close_quietly(accepted)
            for each in others or ():
                if each is not closed:
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

    def _tell_ends(self, ending: _Ending, conn: Connection | None) -> None:
        """Report the end (before close: the local address is still there to read)."""
        ends = self.ends
        assert ends is not None
        word = ending.word
        if word is None:  # killed (a forced stop) or an exception out of greensrv itself
            word = "stopped" if self.stopping else "error"
        if conn is not None:
            ends.ended(word, conn.remote_address, ending.local, conn.id, conn._accepted_at,
                       conn.bytes_in, conn.bytes_out)
            return
        try:
            local = ending.socket.getsockname()
        except OSError:
            local = None
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
        """Complete a TLS handshake (if any) within handshake_timeout; False if it failed."""
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

    __slots__ = ("client", "local", "socket", "started", "word")

    def __init__(self, started: float, client: Any, sock: Any) -> None:
        self.started = started
        self.client = client
        self.socket = sock
        self.local: Any = None
        self.word: str | None = None


def _handshake_done(sock: Any) -> bool:
    try:
        return sock.version() is not None
    except (ValueError, AttributeError, OSError):
        return False


# Compiled plainly (no .pxd): the callback style's per-record loop runs in C.
accelerate(globals(), "greensrv._c_client_life")
