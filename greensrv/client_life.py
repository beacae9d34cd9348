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
from collections.abc import Callable
from itertools import count
from typing import Any

from ._accelerate import accelerate
from .connection import Connection, ConnectionHooks
from .errors import FilterError, TLSError
from .filters import Filter
from .limits import Limits
from .proxy import ProxyHeader
from .proxy_io import ProxySettings, client_address, receive_proxy_header
from .tls import wrap_server_socket
from .transport import close_quietly, describe_handshake_failure, is_tls_socket

__all__ = ["ClientLife"]

log = logging.getLogger("greensrv")


class ClientLife:
    """What the server decided at construction about each client's life, and the life itself.

    The server makes one; its listeners run :meth:`serve` in a new greenlet per accepted socket.
    ``connections`` is the server's registry of live connections (``Server.connections``);
    ``stop_deadline()`` is the end of a running shutdown's grace, or None.
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
        stop_deadline: Callable[[], float | None],
        server: Any,
        proxy: ProxySettings | None = None,
        claim_ip: Callable[[str], bool] | None = None,
        release_ip: Callable[[str], None] | None = None,
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
        self.stop_deadline = stop_deadline
        self.server = server
        #: The PROXY protocol settings, or None; with them, ``claim_ip``/``release_ip`` count
        #: max_connections_per_ip by the client's address the header names.
        self.proxy = proxy
        self.claim_ip = claim_ip
        self.release_ip = release_ip
        self.ids = count(1)

    def serve(self, sock: Any, address: Any) -> None:
        """The life of one client, in its own greenlet; closes every socket it sees."""
        seen = [sock]
        conn: Connection | None = None
        connected = False
        hooks = self.hooks
        header: ProxyHeader | None = None
        claimed: str | None = None
        try:
            if self.proxy is not None:  # the PROXY header comes before everything else
                header = receive_proxy_header(sock, address, self.proxy, self.name, hooks.count)
                if header is None:
                    return
                address = client_address(header, address)
                if self.claim_ip is not None and isinstance(address, tuple):
                    if not self.claim_ip(address[0]):
                        return
                    claimed = address[0]
            if self.pre_connect is not None:
                sock = self._pre_connect(sock, address)
                if sock is None:
                    hooks.count("refused_pre_connect")
                    return
                seen.append(sock)
            if self.ssl_context is not None:
                sock = wrap_server_socket(sock, self.ssl_context)
                seen.append(sock)
            in_filter = self.make_in()
            out_filter = self.make_out() if self.make_out is not None else in_filter
            conn = Connection(sock, address, next(self.ids), in_filter, out_filter, self.limits,
                              hooks, server=self.server)
            conn.proxy = header
            if not self._handshake(conn):
                return
            conn.attach()
            self.connections[conn.id] = conn
            connected = True
            self._run_application(conn)
            error = conn.error
            if error is not None:
                conn.error = None
                hooks.report_error(conn, error)
            conn.finish(self.stop_deadline())
        finally:
            if claimed is not None:
                assert self.release_ip is not None
                self.release_ip(claimed)
            closed = None
            if conn is not None:
                conn.close()  # idempotent; closes conn.socket, start_tls's replacement included
                closed = conn.socket
            for each in seen:
                if each is not closed:
                    close_quietly(each)
            if connected:
                assert conn is not None
                try:
                    if self.on_disconnected is not None:
                        self.on_disconnected(conn)
                except Exception as exc:
                    hooks.report_error(conn, exc)
                finally:
                    del self.connections[conn.id]

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

    def _run_application(self, conn: Connection) -> None:
        """client_connected, then the handler or client_input per record; errors reported."""
        try:
            if self.on_connected is not None:
                self.on_connected(conn, *self.client_args)
            if self.handler is not None:
                self.handler(conn)
            else:
                self._input_loop(conn)
        except Exception as exc:
            if isinstance(exc, FilterError):
                self.hooks.count("closed_filter_error")
            self.hooks.report_error(conn, exc)

    def _input_loop(self, conn: Connection) -> None:
        """POE's default acceptor: client_input for each record until EOF."""
        client_input = self.client_input
        assert client_input is not None
        shutdown_on_error = self.shutdown_on_error
        report_error = self.hooks.report_error
        # `for record in conn`, not get() in a plain loop: Connection.__iter__ hands out the
        # records a read parsed in bulk without a get() each (measured with
        # benchmarks/instructions.py: the plain loop costs 16% more per pipelined line; it
        # would save about 550 bytes per idle connection, the generator's frame).
        for record in conn:
            try:
                client_input(conn, record)
            except Exception as exc:
                if shutdown_on_error:
                    raise
                report_error(conn, exc)


def _handshake_done(sock: Any) -> bool:
    try:
        return sock.version() is not None
    except (ValueError, AttributeError, OSError):
        return False


# Compiled plainly (no .pxd): the callback style's per-record loop runs in C.
accelerate(globals(), "greensrv._c_client_life")
