"""The accept loop and its policy, one :class:`Listener` per listening socket.

Each listening socket (opened by ``addresses.open_listening``) is served by a :class:`Listener`,
a gevent ``StreamServer`` whose accepted sockets go to its owner (the server's per-client life).
The server's admission, not gevent's pool, decides when the listener is full (``concurrency``
can change live); the listener only accepts.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import time
from _socket import socket as _OSSocket
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import gevent.socket
from gevent.server import StreamServer

from ._accelerate import load
from .addresses import bound_address, format_address

log = logging.getLogger("greensrv")

#: ``accept4`` on the listening descriptor, None instead of an exception when nobody waits
#: (``_c_accept.pyx``, Linux, when compiled); without it the listener accepts through Python's
#: socket and catches ``BlockingIOError``.
_ACCELERATED = load("greensrv._c_accept", Path(__file__).with_name("_c_accept.pyx"))
_ACCEPT_FD: Callable[[int], Any] | None = (
    _ACCELERATED.accept if _ACCELERATED is not None and _ACCELERATED.AVAILABLE else None)
#: An OS-level socket made with this type flag over a non-blocking descriptor starts with
#: timeout 0 without setting the descriptor again (Linux; only used with accept4).
_NONBLOCK: int = getattr(socket, "SOCK_NONBLOCK", 0)

#: Accept errors that mean "out of a resource for now": retried with backoff, never fatal.
ACCEPT_CAPACITY_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})

#: Accept errors that mean the peer gave up between the kernel queueing it and our accept.
ACCEPT_TRANSIENT_ERRNOS = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM,
                                     errno.EINTR, errno.ETIMEDOUT})


class ListenerOwner(Protocol):
    """What a listener asks of the server that owns it (the server supplies one)."""

    name: str

    def accept_client(self, sock: Any, address: Any) -> None:
        """Take one accepted socket, in the hub: start its life or refuse it (and close it)."""

    def full(self) -> bool:
        """True while no client may be accepted (the concurrency limit, a stop)."""

    def count(self, key: str) -> None:
        """A statistics counter went up by one ("accept_capacity_errors")."""

    def listener_failed(self, listener: Listener, exc: OSError) -> None:
        """A fatal accept error: report it; the listener stops accepting."""


class Listener(StreamServer):
    """One listening socket; hands each accepted socket to the server, as an OS-level socket
    (``_socket.socket``, non-blocking): the client's life makes a gevent socket of it only if
    it needs one (PROXY, ``client_pre_connect``, TLS, ``conn.socket``).

    Accept policy: at most ``max_accept`` clients per wake-up; while the server is full the
    listener stops watching its socket (clients wait in the kernel backlog); a capacity error
    (EMFILE, ENFILE, ENOMEM, ENOBUFS) pauses accepting with exponential backoff from
    ``min_delay`` to ``max_delay`` and is logged once per episode; a client that vanished before
    accept is skipped; any other error is fatal for this listener and reported to ``error``.
    """

    #: Clients accepted per wake-up before other greenlets get a turn (gevent's default); a
    #: worker sharing its socket with others is given 1 (``workers.SHARED_SOCKET_MAX_ACCEPT``).
    max_accept = 64
    #: Backoff after a capacity error: starts at 10 ms, doubles up to 1 s, so an exhausted
    #: server retries often enough to recover quickly yet never spins.
    min_delay = 0.01
    max_delay = 1.0

    def __init__(self, sock: Any, owner: ListenerOwner, unix_path: str | None = None,
                 max_accept: int | None = None) -> None:
        self._backoff_timer: Any = None  # set while accepting pauses after a capacity error
        if not isinstance(sock, gevent.socket.socket):  # this hub's socket over the descriptor
            sock = gevent.socket.socket(fileno=sock.detach())
        super().__init__(sock, handle=owner.accept_client)
        if max_accept is not None:
            self.max_accept = max_accept
        self.owner = owner
        # gevent calls self.full() before each accept and self.do_handle(sock, address) after
        # it: the owner's own callables, bound here, cost no forwarding frame per client. The
        # owner rebinds ``full`` when its limit changes (set_full_check). do_handle hands the
        # accepted socket over in the hub; from then on the client's life owns and closes it,
        # so gevent's own spawn-and-close wrapper is not used.
        self.full = owner.full
        self.do_handle = owner.accept_client
        self.unix_path = unix_path
        self.address_repr = bound_address(sock)
        self.name = format_address(self.address_repr)
        self._capacity_episode: float | None = None
        self._backoff = self.min_delay  # gevent resets self.delay after every do_read
        # What do_read needs per client, looked up once: the compiled accept and the listening
        # descriptor, else the OS socket's accept (gevent keeps the real, non-blocking socket in
        # ``_sock``); and the accepted sockets' kind.
        self._accept_fd = _ACCEPT_FD
        self._fd: int = sock.fileno()
        self._accept_raw = sock._sock._accept
        self._kind = (sock.family, sock.type, sock.proto)

    def set_full_check(self, full: Callable[[], bool]) -> None:
        """Use ``full`` from now on as the check gevent makes before each accept."""
        self.full = full

    def do_read(self) -> Any:  # gevent's override point: called until it returns None
        """Accept one client: ``(OS-level socket, address)``, or None when the backlog is empty
        or the accept failed (a capacity error pauses accepting; any other is the listener's
        end).
        StreamServer.do_read's work in one frame: it runs twice per accepted client, and the
        second time usually finds nobody (compiled, without an exception)."""
        accept_fd = self._accept_fd
        try:
            if accept_fd is not None:
                accepted = accept_fd(self._fd)
                if accepted is None:
                    return None
                fd, address = accepted
            else:
                fd, address = self._accept_raw()
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                self._capacity_error(exc)
                return None
            if exc.errno in ACCEPT_TRANSIENT_ERRNOS:
                return None
            self.owner.listener_failed(self, exc)
            return None
        self._backoff = self.min_delay
        if self._capacity_episode is not None:
            log.warning("%s: accepting again on %s after %.1f s out of %s",
                        self.owner.name, self.name,
                        time.monotonic() - self._capacity_episode, "descriptors or memory")
            self._capacity_episode = None
        family, type_, proto = self._kind
        try:
            if accept_fd is not None:  # non-blocking already: the flag only tells the object
                return _OSSocket(family, type_ | _NONBLOCK, proto, fd), address
            sock = _OSSocket(family, type_, proto, fd)
        except OSError:  # the descriptor is no socket any more (CPython checks): skip it
            os.close(fd)
            return None
        try:
            sock.setblocking(False)
        except OSError:
            sock.close()
            return None
        return sock, address

    def _capacity_error(self, exc: OSError) -> None:
        self.owner.count("accept_capacity_errors")
        if self._capacity_episode is None:
            self._capacity_episode = time.monotonic()
            log.error("%s: cannot accept on %s: %s; retrying with backoff up to %.1f s "
                      "(logged once until accepting works again)",
                      self.owner.name, self.name, exc.strerror, self.max_delay)
        self.stop_accepting()
        self._backoff_timer = self.loop.timer(self._backoff)
        self._backoff_timer.start(self._resume_after_backoff)
        self._backoff = min(self.max_delay, self._backoff * 2)

    def _resume_after_backoff(self) -> None:
        self._cancel_backoff()
        if self.started and not self.full():
            self.start_accepting()

    def _cancel_backoff(self) -> None:
        timer, self._backoff_timer = self._backoff_timer, None
        if timer is not None:
            timer.close()

    def stop_accepting(self) -> None:
        """Stop watching the socket; a pending backoff is cancelled too (``resume`` restarts)."""
        super().stop_accepting()
        self._cancel_backoff()

    def resume(self) -> None:
        """Start watching the socket again unless stopped or backing off (idempotent)."""
        if self.started and self._backoff_timer is None:
            self.start_accepting()

    def close(self) -> None:
        self._fd = -1  # a descriptor number may be reused at once: never accept on it again
        super().close()
        if self.unix_path:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass
            self.unix_path = None
