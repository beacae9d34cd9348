"""``greensrv.connect``: the client's end of a connection, the same ``Connection`` a handler gets.

The client-side life before the Connection exists: resolve and connect (TCP or unix), send a
PROXY header if asked, wrap in TLS and handshake with the server's name checked, all under one
``timeout``. Whatever fails closes the socket and raises ``OSError``, ``TimeoutError`` or
``TLSError`` with a message naming the address. From then on the Connection owns the socket.
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Any

import gevent.socket

from .addresses import format_address, split_host_port
from .connection import Connection, ConnectionHooks, attach
from .errors import TLSError
from .filters import Filter, Line
from .limits import Limits
from .options import check_seconds
from .tls import describe_client_handshake_failure, wrap_client_socket

__all__ = ["ClientHooks", "connect", "connect_as", "describe_address"]

log = logging.getLogger("greensrv")

#: Connection ids of client-side connections, unique within the process.
_ids = itertools.count(1)

Address = Any  # (host, port) or "unix:/path"
PreConnect = Callable[[Any, Any], Any]


def describe_address(address: Address) -> str:
    """A client's address for messages: a string as the user wrote it, a tuple as
    ``host:port`` or ``[v6]:port``."""
    return address if isinstance(address, str) else format_address(address)


def _parse_address(address: Address) -> tuple[str | None, tuple[str, int] | None]:
    """(unix path, None) or (None, (host, port)); TypeError/ValueError naming the address."""
    if isinstance(address, str):
        if address.startswith("unix:"):
            path = address[5:]
            if not path:
                raise ValueError(f"address {address!r}: no path after 'unix:'")
            return path, None
        hostport = split_host_port(address, "address")
        if hostport is None:
            raise ValueError(f"address: cannot parse {address!r}; expected 'host:port', "
                             "'[v6]:port', 'unix:/path' or a (host, port) tuple")
        address = hostport
    if (isinstance(address, tuple) and len(address) == 2 and isinstance(address[0], str)
            and isinstance(address[1], int) and not isinstance(address[1], bool)):
        if not 0 < address[1] < 65536:
            raise ValueError(f"address {address!r}: port must be 1-65535")
        return None, (address[0], address[1])
    raise TypeError(f"address must be (host, port), 'host:port' or 'unix:/path', "
                    f"not {address!r}")


class ClientHooks(ConnectionHooks):
    """What a client-side Connection reports: counters kept here, errors of output callbacks
    to ``on_error`` (a Client's ``server_error``) or the log, output callbacks as given."""

    client_side = True

    def __init__(self, output_callbacks: Mapping[str, Callable[[Connection], Any]] | None = None,
                 on_error: Callable[[Connection, BaseException], Any] | None = None,
                 server_hostname: str | None = None) -> None:
        self.output_callbacks = MappingProxyType(dict(output_callbacks or {}))
        self.on_error = on_error
        self.server_hostname = server_hostname
        self.counters: dict[str, int] = {}

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def report_error(self, conn: Connection, exc: BaseException) -> None:
        if self.on_error is None:
            log.error("%r: %s: %s", conn, type(exc).__name__, exc)
            return
        try:
            self.on_error(conn, exc)
        except Exception:
            log.exception("server_error callback failed on %r", conn)


def _connect_error(exc: OSError, where: str) -> OSError:
    """The same kind of OSError, with a message that names the address."""
    if where in str(exc):
        return exc
    if isinstance(exc, socket.timeout | TimeoutError):
        return TimeoutError(f"connecting to {where} timed out")
    reason = exc.strerror or str(exc) or type(exc).__name__
    message = f"cannot connect to {where}: {reason}"
    try:
        return type(exc)(exc.errno, message) if exc.errno else type(exc)(message)
    except TypeError:  # a subclass with another constructor
        return OSError(exc.errno, message)


def _open_socket(path: str | None, hostport: tuple[str, int] | None, where: str,
                 timeout: float | None, source_address: Any) -> Any:
    if path is not None:
        if source_address is not None:
            raise ValueError(f"source_address does not apply to {where}")
        sock = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
        return sock
    assert hostport is not None
    sock = gevent.socket.create_connection(hostport, timeout=timeout,
                                           source_address=source_address)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass  # not every stream socket has it; the connection works without
    return sock


def _start_tls(sock: Any, context: ssl.SSLContext, server_hostname: str | None, where: str,
               timeout: float | None) -> Any:
    tls = wrap_client_socket(sock, context, server_hostname, where)
    tls.settimeout(timeout)
    try:
        tls.do_handshake()
    except (OSError, ValueError) as exc:
        tls.close()
        if isinstance(exc, socket.timeout | TimeoutError) or "timed out" in str(exc):
            raise TimeoutError(f"TLS handshake with {where} timed out: the server sent no "
                               "complete handshake in time") from None
        raise TLSError(describe_client_handshake_failure(where, exc)) from None
    return tls


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


def open_connection(address: Address, *, in_filter: Filter, out_filter: Filter,
                    timeout: float | None, ssl_context: ssl.SSLContext | None,
                    server_hostname: str | None, source_address: Any, proxy_header: Any,
                    limits: Limits, hooks: ConnectionHooks,
                    pre_connect: PreConnect | None = None,
                    connection_class: type[Connection] = Connection) -> Connection:
    """Connect, PROXY header, ``pre_connect``, TLS: a ready Connection (see :func:`connect`)."""
    path, hostport = _parse_address(address)
    in_filter.use_on_client()
    if out_filter is not in_filter:
        out_filter.use_on_client()
    where = format_address(f"unix:{path}" if path is not None else hostport)
    if isinstance(hooks, ClientHooks) and hostport is not None:
        hooks.server_hostname = server_hostname or hostport[0]
    if timeout is not None:
        check_seconds("timeout", timeout, positive=True)
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        sock = _open_socket(path, hostport, where, timeout, source_address)
    except OSError as exc:
        raise _connect_error(exc, where) from None
    try:
        peer = path if path is not None else sock.getpeername()[:2]
        if proxy_header is not None:
            sock.settimeout(_remaining(deadline))
            sock.sendall(proxy_header if isinstance(proxy_header, bytes) else
                         proxy_header.encode(getattr(proxy_header, "version", 2)))
        if pre_connect is not None:
            replaced = pre_connect(sock, peer)
            if replaced is None:
                raise ConnectionAbortedError(f"pre_connect gave up the connection to {where}")
            sock = replaced
        if ssl_context is not None:
            if server_hostname is None and hostport is not None:
                server_hostname = hostport[0]
            sock = _start_tls(sock, ssl_context, server_hostname, where, _remaining(deadline))
        sock.settimeout(None)
        conn = connection_class(sock, peer, next(_ids), in_filter, out_filter, limits, hooks)
        attach(conn)
        return conn
    except OSError as exc:  # TimeoutError too; TLSError is no OSError and names the address
        sock.close()
        raise _connect_error(exc, where) from None
    except BaseException:
        sock.close()
        raise


def connect(address: Address, *, filter: Filter | None = None,
            input_filter: Filter | None = None, output_filter: Filter | None = None,
            timeout: float | None = None, ssl_context: ssl.SSLContext | None = None,
            server_hostname: str | None = None, source_address: Any = None,
            proxy_header: Any = None, **limits: Any) -> Connection:
    """Connect to ``address`` and return a ``Connection``, the class a server's handler gets.

    ``address`` is ``(host, port)``, ``"host:port"``, ``"[v6]:port"`` or ``"unix:/path"``.
    ``filter`` (default ``Line()``), or ``input_filter`` and ``output_filter`` together,
    frame the records; the instances given are used themselves, not cloned (a ``Client``
    clones them per connection); a ``Resp`` sends commands (``Filter.use_on_client``). ``timeout``
    bounds the connect and the TLS handshake together. With ``ssl_context``, TLS is used and
    the certificate's name is checked against ``server_hostname`` (default: the host) when the
    context checks host names, as ``ssl.create_default_context()`` does. ``source_address``
    is ``(host, port)`` to bind before connecting. ``proxy_header`` (a
    ``greensrv.proxy.ProxyHeader``, or anything with ``encode(version)``, or bytes) is sent
    first, before TLS. ``limits`` are the fields of ``greensrv.limits.Limits``, as for a
    server: ``high_mark``, ``low_mark``, ``output_limit``, ``idle_timeout``,
    ``record_timeout``, ``flush_timeout``...

    Raises ``OSError`` (``ConnectionRefusedError``...), ``TimeoutError`` or ``TLSError``, each
    naming the address. The connection is a context manager that closes it; ``shutdown()``
    ends it gracefully; nothing is reported to a callback (``get()`` raises).
    """
    return connect_as(Connection, address, filter=filter, input_filter=input_filter,
                      output_filter=output_filter, timeout=timeout, ssl_context=ssl_context,
                      server_hostname=server_hostname, source_address=source_address,
                      proxy_header=proxy_header, **limits)


def connect_as(connection_class: type[Connection], address: Address, *,
               filter: Filter | None = None, input_filter: Filter | None = None,
               output_filter: Filter | None = None, timeout: float | None = None,
               ssl_context: ssl.SSLContext | None = None, server_hostname: str | None = None,
               source_address: Any = None, proxy_header: Any = None,
               **limits: Any) -> Connection:
    """:func:`connect`, making an instance of ``connection_class`` (a subclass of
    ``Connection``, e.g. ``greensrv.testing``'s, whose ``get`` has a default timeout)."""
    in_filter, out_filter = pick_filters(filter, input_filter, output_filter)
    checked = make_limits(limits)
    return open_connection(address, in_filter=in_filter, out_filter=out_filter, timeout=timeout,
                           ssl_context=ssl_context, server_hostname=server_hostname,
                           source_address=source_address, proxy_header=proxy_header,
                           limits=checked, hooks=ClientHooks(),
                           connection_class=connection_class)


#: The keyword arguments ``connect`` and ``Client`` pass on as limits: the fields of Limits.
LIMIT_OPTIONS = frozenset(field.name for field in fields(Limits) if field.init)


def make_limits(options: dict[str, Any]) -> Limits:
    """``Limits(**options)``, with a TypeError naming an option that is not a limit."""
    unknown = sorted(set(options) - LIMIT_OPTIONS)
    if unknown:
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; limits are "
                        f"{', '.join(sorted(LIMIT_OPTIONS))}")
    return Limits(**options)


def pick_filters(filter: Any, input_filter: Any, output_filter: Any
                 ) -> tuple[Filter, Filter]:
    """(input, output) filters from the options; TypeError naming a misused one."""
    if input_filter is not None or output_filter is not None:
        if filter is not None or input_filter is None or output_filter is None:
            raise TypeError("give input_filter and output_filter together, and not with filter")
        for name, value in (("input_filter", input_filter), ("output_filter", output_filter)):
            if not isinstance(value, Filter):
                raise TypeError(f"{name} must be a Filter, not {type(value).__name__}")
        return input_filter, output_filter
    if filter is None:
        filter = Line()
    if not isinstance(filter, Filter):
        raise TypeError(f"filter must be a Filter, not {type(filter).__name__}")
    return filter, filter
