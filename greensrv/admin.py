"""The operations listeners: the admin HTTP endpoint and HAProxy's agent-check port.

One object owns both listening sockets and every client of theirs, multiplexed by one epoll
object whose own descriptor becomes readable when any of them is ready. So the process that
owns the service's listeners drives it without a thread or a greenlet per client: the master
adds that descriptor to what its supervision loop already waits on, and the single-process
server waits on it in one greenlet. Each turn (:meth:`OpsEndpoint.step`) does only
non-blocking work, bounded per client, so neither loop is ever held up by an admin client.

HTTP/1.1 is parsed by ``h11`` (one request per connection, answered with ``Connection:
close``). Bounds against slow or hostile clients: a request's head may be at most
``MAX_REQUEST_BYTES``, a client has ``CLIENT_TIMEOUT`` seconds for its whole exchange, and at
most ``MAX_CLIENTS`` are kept: past that, the oldest is dropped to make room, so a flood of idle
connections cannot lock out the orchestrator's probe.

The agent port writes one line of HAProxy's agent grammar per connection, then shuts its side
down and closes once the peer has (or at the timeout): never a reset that could eat the line.

Resource handling: :meth:`close` closes the listeners, every client and the epoll object.
Linux only (epoll), like the master.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import time
from http import HTTPStatus
from typing import Any, Protocol

from gevent.monkey import get_original

from .errors import StartupError

__all__ = ["OpsEndpoint", "Operations", "check_ops_addresses"]

log = logging.getLogger("greensrv")

_epoll = get_original("select", "epoll")
_socket = get_original("socket", "socket")
_getaddrinfo = get_original("socket", "getaddrinfo")

#: Largest request head (request line and headers) an admin client may send.
MAX_REQUEST_BYTES = 8192
#: Seconds an admin or agent client has for its whole exchange before it is dropped.
CLIENT_TIMEOUT = 5.0
#: Most admin and agent clients kept at once; the oldest goes when one more arrives.
MAX_CLIENTS = 1024
#: Most new clients accepted per listener per turn, so a connect flood cannot hog a turn.
ACCEPTS_PER_TURN = 64
#: Most bytes read from one client per turn.
READ_SIZE = 4096

_EPOLLIN, _EPOLLOUT = select.EPOLLIN, select.EPOLLOUT
_EPOLLERR_HUP = select.EPOLLERR | select.EPOLLHUP


class Operations(Protocol):
    """What the endpoint asks the process that runs it (the master, or a single server)."""

    def not_ready_reason(self) -> str | None:
        """None while accepting and not draining or stopping; else a one-line reason."""

    def agent_line(self) -> str:
        """HAProxy's agent answer, e.g. ``"up ready 75% maxconn:40"`` or ``"drain"``."""

    def metrics_page(self) -> bytes:
        """The Prometheus text exposition."""


class _Client:
    __slots__ = ("deadline", "h11", "kind", "out", "sock", "wrote")

    def __init__(self, sock: Any, kind: str, deadline: float, h11_conn: Any) -> None:
        self.sock = sock
        self.kind = kind  # "admin" or "agent"
        self.deadline = deadline
        self.h11 = h11_conn
        self.out = b""
        self.wrote = False  # the whole answer is out: wait for the peer's EOF, then close


class OpsEndpoint:
    """Binds ``admin`` and/or ``agent`` (``"HOST:PORT"``) and answers from ``ops``."""

    def __init__(self, ops: Operations, admin: str | None, agent: str | None) -> None:
        self.ops = ops
        self._epoll = _epoll()
        self._listeners: dict[int, tuple[Any, str]] = {}
        self._clients: dict[int, _Client] = {}  # insertion order is age order
        self.addresses: dict[str, Any] = {}
        try:
            for kind, address in (("admin", admin), ("agent", agent)):
                if address is not None:
                    sock = _bind(kind, address)
                    self._listeners[sock.fileno()] = (sock, kind)
                    self._epoll.register(sock.fileno(), _EPOLLIN)
                    self.addresses[kind] = sock.getsockname()
        except BaseException:
            self.close()
            raise

    def fileno(self) -> int:
        """Readable whenever :meth:`step` has something to do."""
        return self._epoll.fileno()

    def timeout(self) -> float | None:
        """Seconds until the oldest client's deadline (None without clients)."""
        if not self._clients:
            return None
        first = next(iter(self._clients.values()))
        return max(0.0, first.deadline - time.monotonic())

    def step(self) -> None:
        """Do whatever is ready, without blocking; drop clients past their deadline."""
        for fd, events in self._epoll.poll(0):
            listener = self._listeners.get(fd)
            if listener is not None:
                self._accept(*listener)
                continue
            client = self._clients.get(fd)
            if client is None:
                continue
            if events & _EPOLLOUT:
                self._send(fd, client)
            if fd in self._clients and events & (_EPOLLIN | _EPOLLERR_HUP):
                self._receive(fd, client)
        now = time.monotonic()
        while self._clients:
            fd, client = next(iter(self._clients.items()))
            if client.deadline > now:
                break
            self._drop(fd)

    def close(self) -> None:
        for fd in list(self._clients):
            self._drop(fd)
        for sock, _ in self._listeners.values():
            sock.close()
        self._listeners.clear()
        self._epoll.close()

    # -- clients -------------------------------------------------------------------------------
    def _accept(self, listener: Any, kind: str) -> None:
        for _ in range(ACCEPTS_PER_TURN):
            try:
                sock, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and the like: try again next turn
                log.warning("greensrv: %s endpoint cannot accept: %s", kind, exc)
                return
            sock.setblocking(False)
            while len(self._clients) >= MAX_CLIENTS:
                self._drop(next(iter(self._clients)))  # the oldest makes room
            deadline = time.monotonic() + CLIENT_TIMEOUT
            if kind == "agent":
                client = _Client(sock, kind, deadline, None)
                client.out = (self.ops.agent_line() + "\n").encode("ascii")
            else:
                import h11

                client = _Client(sock, kind, deadline,
                                 h11.Connection(h11.SERVER,
                                                max_incomplete_event_size=MAX_REQUEST_BYTES))
            fd = sock.fileno()
            self._clients[fd] = client
            self._epoll.register(fd, _EPOLLIN)
            if client.out:
                self._send(fd, client)

    def _receive(self, fd: int, client: _Client) -> None:
        try:
            data = client.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)
            return
        if client.wrote or client.h11 is None:  # the answer is out: only waiting for EOF
            if not data:
                self._drop(fd)
            return
        self._answer(fd, client, data)

    def _answer(self, fd: int, client: _Client, data: bytes) -> None:
        import h11

        conn = client.h11
        try:
            conn.receive_data(data)
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            client.out = _plain_response(status, f"bad request: {exc}\n")
            self._send(fd, client)
            return
        if event is h11.NEED_DATA:
            if not data:  # EOF before a whole request
                self._drop(fd)
            return
        if not isinstance(event, h11.Request):
            self._drop(fd)
            return
        status, content_type, body = self._route(event.method, event.target)
        headers = [("content-type", content_type), ("content-length", str(len(body))),
                   ("connection", "close")]
        out = conn.send(h11.Response(status_code=status, headers=headers,
                                     reason=HTTPStatus(status).phrase.encode()))
        if event.method != b"HEAD":
            out += conn.send(h11.Data(data=body))
        out += conn.send(h11.EndOfMessage())
        client.out = out
        self._send(fd, client)

    def _route(self, method: bytes, target: bytes) -> tuple[int, str, bytes]:
        path = target.split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET and HEAD\n"
        if path == b"/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.ops.metrics_page()
        if path == b"/livez":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == b"/readyz":
            reason = self.ops.not_ready_reason()
            if reason is None:
                return 200, "text/plain; charset=utf-8", b"ready\n"
            return 503, "text/plain; charset=utf-8", f"not ready: {reason}\n".encode()
        return 404, "text/plain; charset=utf-8", b"not found\n"

    def _send(self, fd: int, client: _Client) -> None:
        try:
            sent = client.sock.send(client.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(fd)
            return
        client.out = client.out[sent:]
        if client.out:
            self._epoll.modify(fd, _EPOLLIN | _EPOLLOUT)
            return
        client.wrote = True
        try:
            # FIN, then close once the peer has read and closed: never a reset
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(fd)
            return
        self._epoll.modify(fd, _EPOLLIN)

    def _drop(self, fd: int) -> None:
        client = self._clients.pop(fd, None)
        if client is None:
            return
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):
            pass
        client.sock.close()


def _plain_response(status: int, text: str) -> bytes:
    body = text.encode("utf-8", "replace")
    reason = HTTPStatus(status).phrase.encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, reason, len(body), body))


def check_ops_addresses(admin: Any, agent: Any) -> tuple[str | None, str | None]:
    """Check the ``admin`` and ``agent`` options (``"HOST:PORT"`` or None) at construction;
    ``admin`` also needs the ``greensrv[metrics]`` libraries."""
    for option, value in (("admin", admin), ("agent", agent)):
        if value is not None:
            _split(option, value)
    if admin is not None:
        from .metrics import require_metrics_libraries

        require_metrics_libraries("admin")
    return admin, agent


def _split(option: str, address: Any) -> tuple[str, int]:
    if not isinstance(address, str):
        raise TypeError(f"{option} must be a 'HOST:PORT' string, not {type(address).__name__}")
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"{option}={address!r}: expected HOST:PORT (e.g. 127.0.0.1:9100)")
    return (host[1:-1] if host.startswith("[") and host.endswith("]") else host), int(port_text)


def _bind(kind: str, address: str) -> Any:
    """A non-blocking listening socket on ``"HOST:PORT"`` (``"[V6]:PORT"``); StartupError
    naming the option and the address when it cannot be."""
    option = f"{kind}={address!r}"
    host, port = _split(kind, address)
    try:
        family, kind_, proto, _, sockaddr = _getaddrinfo(
            host or None, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)[0]
        sock = _socket(family, kind_, proto)
    except OSError as exc:
        raise StartupError(f"{option}: {exc}") from exc
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        why = "address in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise StartupError(f"{option}: cannot listen: {why}") from exc
    return sock
