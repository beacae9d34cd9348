"""Listening addresses: parsing ``listen`` entries, opening them, and writing them for people.

Three jobs, each done once for the whole package:

- :func:`parse_listen` turns one ``listen`` entry (``"host:port"``, ``"[v6]:port"``,
  ``"unix:/path"``, ``"fd:N"``, ``"systemd[:NAME]"`` or a bound socket) into a :class:`ListenSpec`;
- :func:`open_listening` is the one dispatch that binds, adopts or makes the ``SO_REUSEPORT``
  socket for each spec, for the single-process server and for the master alike; a failure is a
  :class:`~greensrv.errors.StartupError` whose message names the address as the user wrote it;
- :func:`format_address` writes an address as ``listen`` takes it (``host:port``,
  ``[v6]:port``, ``unix:/path``, ``fd:N``), for logs, errors, ``repr`` and systemd's STATUS line.

Sockets made here are the standard library's, never gevent's: a gevent socket belongs to a hub,
and the master forks workers that each make a hub of their own. The listeners wrap them.

Resource handling: :func:`open_listening` returns the sockets it opened to its caller, who owns
them (and the unix socket files: :attr:`OpenSocket.unix_path`); when one entry fails, the ones
already opened are closed before the error is raised.
"""

from __future__ import annotations

import errno
import math
import os
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from . import systemd
from .defaults import DEFAULT_BACKLOG
from .errors import StartupError
from .options import check_seconds

__all__ = ["ListenSpec", "OpenSocket", "bound_address", "check_defer_accept", "format_address",
           "open_listening", "parse_listen", "parse_listen_entries", "reuse_port_socket",
           "set_defer_accept", "split_host_port"]

_TCP_DEFER_ACCEPT = getattr(socket, "TCP_DEFER_ACCEPT", None)
_TCP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


@dataclass(frozen=True)
class ListenSpec:
    """One parsed ``listen`` entry: ``kind`` is ``"tcp"`` (value ``(host, port)``), ``"unix"``
    (a path), ``"fd"`` (an inherited descriptor), ``"systemd"`` (a name or None: all) or
    ``"socket"`` (a bound socket object)."""

    kind: str
    value: Any

    def __iter__(self) -> Any:  # ``kind, value = spec``, as the (kind, value) pairs it replaced
        return iter((self.kind, self.value))

    def __str__(self) -> str:
        if self.kind == "systemd":
            return "systemd" if self.value is None else f"systemd:{self.value}"
        if self.kind == "socket":
            return format_address(_socket_name(self.value))
        return format_address(self.value)


@dataclass(frozen=True)
class OpenSocket:
    """A listening socket :func:`open_listening` opened, and where it came from."""

    sock: socket.socket
    spec: ListenSpec
    #: The socket file this process created (unlinked by whoever closes it), else None.
    unix_path: str | None = None


_FORMS = "'host:port', '[v6]:port', 'unix:/path', 'fd:N', 'systemd[:NAME]' or a bound socket"


def parse_listen(entry: Any) -> ListenSpec:
    """One ``listen`` entry as a :class:`ListenSpec`; ``ValueError`` naming it if malformed."""
    if hasattr(entry, "accept") and hasattr(entry, "fileno"):
        return ListenSpec("socket", entry)
    if not isinstance(entry, str):
        raise ValueError(f"listen: cannot use {entry!r}; expected {_FORMS}")
    if entry.startswith("unix:"):
        path = entry[5:]
        if not path:
            raise ValueError(f"listen: {entry!r} names no path")
        return ListenSpec("unix", path)
    if entry == "systemd" or entry.startswith("systemd:"):
        return ListenSpec("systemd", entry[8:] or None)  # passed by systemd (systemd.py)
    if entry.startswith("fd:"):
        try:
            return ListenSpec("fd", int(entry[3:]))
        except ValueError:
            raise ValueError(f"listen: {entry!r}: expected 'fd:N' with a number") from None
    hostport = split_host_port(entry, "listen")
    if hostport is None:
        raise ValueError(f"listen: cannot parse {entry!r}; expected {_FORMS}")
    return ListenSpec("tcp", hostport)


def split_host_port(entry: str, option: str) -> tuple[str, int] | None:
    """``"host:port"`` or ``"[v6]:port"`` as ``(host, port)``, None if it has no port; the
    TCP form that ``listen`` and a client's ``address`` share. ``ValueError`` naming
    ``option`` and ``entry`` for a port out of range or an IPv6 address without brackets."""
    host, sep, port = entry.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if int(port) > 65535:
        raise ValueError(f"{option}: {entry!r}: port {port} is out of range (0 to 65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{option}: {entry!r}: put an IPv6 address in brackets, "
                         f"'[{host}]:{port}'")
    return host, int(port)


def parse_listen_entries(listen: Any) -> tuple[ListenSpec, ...]:
    """``listen``'s value (one entry or several) as specs; ``ValueError`` if it names none."""
    entries: Iterable[Any] = ([listen] if isinstance(listen, str) or hasattr(listen, "accept")
                              else listen)
    specs = tuple(parse_listen(e) for e in entries)
    if not specs:
        raise ValueError("listen: no address given")
    return specs


def format_address(address: Any) -> str:
    """``host:port``, ``[v6]:port``, ``unix:/path`` or ``fd:N``: the forms ``listen`` takes."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, int):
        return f"fd:{address}"
    if isinstance(address, bytes):
        address = address.decode(errors="replace")
    if isinstance(address, str):
        return address if address.startswith("unix:") else f"unix:{address}"
    return repr(address)


def bound_address(sock: Any) -> Any:
    """The address as ``Server.addresses`` reports it: ``(host, port)`` or a unix path."""
    name = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return name.decode() if isinstance(name, bytes) else name
    return (name[0], name[1])


# -- opening ----------------------------------------------------------------------------------

def open_listening(specs: Iterable[ListenSpec], *, reuse_port: bool = False,
                   for_master: bool = False,
                   backlog: int = DEFAULT_BACKLOG) -> list[OpenSocket]:
    """Open every spec; the one place where greensrv binds, adopts or reuses a port.

    ``reuse_port``: each TCP address gets an ``SO_REUSEPORT`` socket (one of several processes
    on the port). ``for_master``: the sockets are a master's, inherited by its workers: a
    reuse-port socket is bound but never listens (it holds the port; each worker listens on its
    own), and a socket object given in ``listen`` is duplicated, the user's left alone.
    Raises :class:`StartupError` naming the entry; ``ValueError`` for a ``systemd`` entry when
    systemd passed no matching socket.
    """
    opened: list[OpenSocket] = []
    try:
        for spec in specs:
            try:
                opened.extend(_open(spec, reuse_port, for_master, backlog))
            except OSError as exc:
                raise listen_error(spec, exc) from exc
    except BaseException:
        for each in opened:
            each.sock.close()
            if each.unix_path:
                _unlink(each.unix_path)
        raise
    return opened


def _open(spec: ListenSpec, reuse_port: bool, for_master: bool,
          backlog: int) -> list[OpenSocket]:
    kind, value = spec.kind, spec.value
    if kind == "tcp" and reuse_port:
        host, port = value
        return [OpenSocket(reuse_port_socket(None, host, port,
                                             backlog=None if for_master else backlog), spec)]
    if kind == "tcp":
        host, port = value
        return [OpenSocket(bind_tcp(host, port, backlog=backlog), spec)]
    if kind == "unix":
        return [OpenSocket(bind_unix(value, backlog=backlog), spec, unix_path=value)]
    if kind == "fd":
        return [OpenSocket(_adopt(socket.socket(fileno=value), backlog), spec)]
    if kind == "systemd":
        return [OpenSocket(_adopt(socket.socket(fileno=fd), backlog), spec)
                for fd in systemd.listen_sockets(value)]
    sock = socket.socket(fileno=os.dup(value.fileno())) if for_master else value
    return [OpenSocket(_adopt(sock, backlog), spec)]


def _adopt(sock: Any, backlog: int) -> Any:
    sock.listen(backlog)
    return sock


def bind_tcp(host: str, port: int, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """A listening socket for ``host:port`` (IPv6 sockets are IPv6-only)."""
    family, address = _resolve(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_unix(path: str, backlog: int = DEFAULT_BACKLOG) -> socket.socket:
    """A listening unix socket at ``path``, replacing a stale socket file (never another file)."""
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def reuse_port_socket(like: socket.socket | None, host: str = "", port: int = 0,
                      backlog: int | None = DEFAULT_BACKLOG) -> socket.socket:
    """A TCP socket with ``SO_REUSEPORT`` bound to ``like``'s address (or ``host:port``),
    listening unless ``backlog`` is None.

    A master's own is bound but never listens (it holds the port and resolves port 0); each
    worker's listens, and the kernel spreads new connections across the listening ones.
    """
    family: int
    if like is not None:
        family, address = like.family, like.getsockname()
    else:
        family, address = _resolve(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        if backlog is not None:
            sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


def check_defer_accept(value: Any, specs: Iterable[ListenSpec]) -> float | None:
    """``defer_accept`` checked against the ``listen`` entries: None (off) or seconds.

    A ValueError names it where it cannot apply: a unix socket, a system without
    ``TCP_DEFER_ACCEPT`` (it is Linux's)."""
    if value is None:
        return None
    check_seconds("defer_accept", value, positive=True)
    if _TCP_DEFER_ACCEPT is None:
        raise ValueError("defer_accept needs TCP_DEFER_ACCEPT, which this system lacks "
                         "(it is Linux's); leave defer_accept=None here")
    for spec in specs:
        if spec.kind == "unix":
            raise ValueError(f"defer_accept applies to TCP listening sockets only, and "
                             f"'{spec}' is a unix socket")
    return float(value)


def set_defer_accept(sockets: Iterable[Any], seconds: float) -> None:
    """``TCP_DEFER_ACCEPT`` on each listening socket: the kernel queues a connection for accept
    only once its first bytes have arrived, waiting up to about ``seconds`` (whole seconds,
    rounded up; docs/overload.md says what Linux does then). A ValueError names the option for
    a socket that is not TCP (an inherited unix socket)."""
    for sock in sockets:
        if sock.family not in _TCP_FAMILIES:
            raise ValueError(f"defer_accept applies to TCP listening sockets only, and "
                             f"{format_address(bound_address(sock))} is a unix socket")
        sock.setsockopt(socket.IPPROTO_TCP, _TCP_DEFER_ACCEPT, max(1, math.ceil(seconds)))


def _resolve(host: str, port: int) -> tuple[int, Any]:
    info = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0,
                              socket.AI_PASSIVE)[0]
    return info[0], info[4]


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# -- errors -----------------------------------------------------------------------------------

#: What the usual bind failures mean, said as a person would look for them.
_HINTS = {
    "EADDRINUSE": "address already in use (another process is listening there; "
                  "`ss -ltnp` shows which)",
    "EACCES": "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; "
              "a unix path needs a writable directory)",
    "EADDRNOTAVAIL": "address not available (no interface on this machine has it)",
}


def listen_error(spec: ListenSpec, exc: OSError) -> StartupError:
    """A :class:`StartupError` that names the ``listen`` entry that could not be opened."""
    reason = _HINTS.get(errno.errorcode.get(exc.errno or 0, "")) or exc.strerror or str(exc)
    error = StartupError(exc.errno or 0, f"cannot listen on {spec}: {reason}")
    error.address = spec.value if spec.kind != "socket" else None
    return error


def _socket_name(sock: Any) -> Any:
    try:
        return sock.getsockname()
    except OSError:
        return sock
