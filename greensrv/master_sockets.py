"""The master's listening sockets: bound once, inherited by every worker it forks.

The master keeps plain (not gevent) sockets: a gevent socket belongs to a hub, and each worker
replaces the hub it inherits. A worker adopts the inherited descriptors as ``fd:N`` entries; with
``reuse_port`` it binds its own ``SO_REUSEPORT`` socket for each TCP address instead.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from . import systemd
from .listeners import BACKLOG, bind_tcp, bind_unix

__all__ = ["MasterSockets"]


class MasterSockets:
    """Binds every ``listen`` entry of a server once; owns the sockets until ``close()``.

    Start-up errors are ``OSError``/``ValueError`` whose message names the address.
    """

    def __init__(self, specs: list[tuple[str, Any]], reuse_port: bool) -> None:
        self.reuse_port = reuse_port
        self._sockets: list[socket.socket] = []
        self._kinds: list[str] = []  # "tcp", "unix", "fd": how each socket was made
        self._unix_paths: list[str] = []
        try:
            for kind, value in specs:
                try:
                    self._bind(kind, value)
                except OSError as exc:
                    raise OSError(exc.errno, f"cannot listen on {_describe(kind, value)}: "
                                  f"{exc.strerror or exc}") from exc
        except BaseException:
            self.close()
            raise

    def _bind(self, kind: str, value: Any) -> None:
        if kind == "tcp" and self.reuse_port:
            self._keep(kind, reuse_port_socket(None, *value))
        elif kind == "tcp":
            self._keep(kind, _plain(bind_tcp(*value)))
        elif kind == "unix":
            self._keep(kind, _plain(bind_unix(value)))
            self._unix_paths.append(value)
        elif kind == "fd":
            self._keep(kind, socket.socket(fileno=value))
        elif kind == "systemd":
            for fd in systemd.listen_sockets(value):
                self._keep("fd", socket.socket(fileno=fd))
        else:  # a bound socket object: the master keeps its own descriptor for it
            self._keep(kind, socket.socket(fileno=os.dup(value.fileno())))

    def _keep(self, kind: str, sock: socket.socket) -> None:
        # Left close-on-exec: fork passes it to the workers, but no program they exec gets it.
        self._kinds.append(kind)
        self._sockets.append(sock)

    @property
    def addresses(self) -> list[str]:
        """What the master listens on, as its log and STATUS line show it."""
        return [_format(sock) for sock in self._sockets]

    def worker_entries(self) -> list[Any]:
        """The ``listen`` entries for a worker (call it in the worker, after the fork)."""
        entries: list[Any] = []
        for kind, sock in zip(self._kinds, self._sockets, strict=True):
            if kind == "tcp" and self.reuse_port:
                entries.append(reuse_port_socket(sock))
            else:
                entries.append(f"fd:{sock.fileno()}")
        return entries

    def close(self) -> None:
        """Close every socket and unlink the unix socket files; idempotent."""
        for sock in self._sockets:
            sock.close()
        self._sockets = []
        self._kinds = []
        for path in self._unix_paths:
            try:
                os.unlink(path)
            except OSError:
                pass
        self._unix_paths = []


def reuse_port_socket(like: socket.socket | None, host: str = "", port: int = 0) -> Any:
    """A TCP socket with ``SO_REUSEPORT`` bound to ``like``'s address (or ``host:port``).

    The master's own is bound but never listens (it holds the port and resolves port 0); each
    worker's listens, and the kernel spreads new connections across the listening ones.
    """
    if like is not None:
        family, address = like.family, like.getsockname()
    else:
        info = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                                  socket.AI_PASSIVE)[0]
        family, address = info[0], info[4]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if like is not None:
            sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    return sock


def _plain(gevent_socket: Any) -> socket.socket:
    return socket.socket(fileno=gevent_socket.detach())


def _format(sock: socket.socket) -> str:
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{name.decode() if isinstance(name, bytes) else name}"
    if sock.family == socket.AF_INET6:
        return f"[{name[0]}]:{name[1]}"
    return f"{name[0]}:{name[1]}"


def _describe(kind: str, value: Any) -> str:
    if kind == "tcp":
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{kind}:{value}"
