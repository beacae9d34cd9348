"""Non-blocking byte transports under a Connection: plain TCP/unix sockets and TLS.

A transport never waits: ``recv`` returns ``None`` and ``send`` returns 0 when the socket would
block, and ``wants_write`` says which readiness a TLS read is waiting for. The Connection owns
all waiting, so it can interrupt a wait (``stop()``, ``shutdown()``, ``idle_timeout``) without
racing the socket.

Compiled, a plain transport reads and writes with libc ``recv``/``send`` on the socket's
descriptor (the ``.pxd``'s ``_recv_from``/``_send_to``): no argument parsing, no 64 KiB
allocation shrunk after each small read (one buffer of the process, copied from), no GIL
release around a call that cannot block. Its
errors are the socket's own: EINTR is retried after Python's signal handlers ran, EAGAIN is
``None``/0, anything else (EBADF once the socket is closed, ECONNRESET...) is the ``OSError``
subclass ``socket.recv`` would raise, with its errno and strerror. As Python the same functions
are the socket's methods.
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Any

import gevent.socket
import gevent.ssl

from ._accelerate import accelerate

#: errnos that mean the peer went away; reading or writing then is an end, not an error to log.
PEER_GONE_ERRNOS = frozenset({errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ETIMEDOUT,
                              errno.ENOTCONN, errno.ESHUTDOWN})


# Compiled where libc has MSG_DONTWAIT, _c_transport.pxd makes _OS_IO the C constant 1 and
# _recv_from/_send_to inline C functions (libc recv/send on the descriptor). Bound through
# globals() so that Cython sees no assignment; as Python, the socket's methods do the work.
globals()["_OS_IO"] = False


class PlainTransport:
    """A connected TCP or unix socket, used through its non-blocking OS-level object."""

    __slots__ = ("_raw", "wants_write")

    is_tls = False

    def __init__(self, sock: Any) -> None:
        # gevent sockets keep the real, non-blocking socket in ``_sock``; a stdlib socket is
        # used as it is once set non-blocking.
        raw = getattr(sock, "_sock", sock)
        if raw.gettimeout() != 0.0:  # gevent's are non-blocking already: spare the syscall
            raw.setblocking(False)
        self._raw = raw
        self.wants_write = False

    def recv(self, size: int) -> bytes | None:
        """Up to ``size`` bytes, b"" at EOF, None when nothing is there (never waits)."""
        if _OS_IO:  # type: ignore[name-defined]  # noqa: F821
            data: bytes | None = _recv_from(  # type: ignore[name-defined]  # noqa: F821
                self._raw, size)
            return data
        try:
            return self._raw.recv(size)
        except BlockingIOError:
            return None

    def send(self, data: bytearray) -> int:
        """Offer ``data``; how many bytes the kernel took, 0 when the socket is full."""
        if _OS_IO:  # type: ignore[name-defined]  # noqa: F821
            n: int = _send_to(self._raw, data)  # type: ignore[name-defined]  # noqa: F821
            return n
        try:
            return self._raw.send(data)
        except BlockingIOError:
            return 0

    def pending(self) -> int:
        return 0

    def shutdown_write(self) -> None:
        try:
            self._raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already disconnected: nothing left to half-close


class TLSTransport:
    """A handshaken TLS socket, read and written through its SSL object without blocking."""

    __slots__ = ("_raw", "_ssl", "wants_write")

    is_tls = True

    def __init__(self, sock: Any) -> None:
        self._ssl = sock._sslobj
        self._raw = getattr(sock, "_sock", sock)
        self._raw.setblocking(False)
        self.wants_write = False

    def recv(self, size: int) -> bytes | None:
        try:
            data: bytes = self._ssl.read(size)
        except ssl.SSLWantReadError:
            self.wants_write = False
            return None
        except ssl.SSLWantWriteError:
            self.wants_write = True
            return None
        except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
            return b""  # a close without close_notify is still the end of input
        self.wants_write = False
        return data

    def send(self, data: bytearray) -> int:
        try:
            n: int = self._ssl.write(data)
            return n
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except ssl.SSLEOFError as exc:
            raise ConnectionResetError(errno.ECONNRESET, str(exc)) from None

    def pending(self) -> int:
        n: int = self._ssl.pending()
        return n

    def shutdown_write(self) -> None:
        """Send close_notify (one non-blocking attempt), then FIN."""
        try:
            self._ssl.shutdown()
        except (ssl.SSLError, OSError, ValueError):
            pass  # close_notify was queued or the peer is gone; FIN follows either way
        try:
            self._raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def is_tls_socket(sock: Any) -> bool:
    """True when ``sock`` carries an SSL object (a TLS socket, handshaken or not)."""
    if type(sock) is gevent.socket.socket:
        # The usual accepted socket: answered without gevent's __getattr__, whose miss for
        # "_sslobj" costs an exception per connection.
        return False
    return getattr(sock, "_sslobj", None) is not None


def close_quietly(sock: Any) -> None:
    """Close ``sock``, ignoring the error of a socket already gone (closing twice is harmless)."""
    try:
        sock.close()
    except OSError:
        pass


def make_transport(sock: Any) -> PlainTransport | TLSTransport:
    """Return the transport for ``sock``: TLS when it carries an SSL object."""
    return TLSTransport(sock) if is_tls_socket(sock) else PlainTransport(sock)


def describe_handshake_failure(address: Any, exc: BaseException) -> str:
    """A message a person understands for a failed TLS handshake."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError) or "timed out" in text:
        reason = "the client sent no complete handshake in time"
    elif any(mark in text for mark in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "UNKNOWN_PROTOCOL",
                                        "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG")):
        reason = f"the client does not speak TLS (it sent plaintext?): {text}"
    elif isinstance(exc, ssl.SSLEOFError) or not text or "EOF" in text:
        reason = f"the client closed the connection during the handshake ({text})"
    else:
        reason = text
    return f"TLS handshake with {address!r} failed: {reason}"


# Compiled with _c_transport.pxd: the plain reads and writes in C on the descriptor, and every
# call per read, write and connection without an interpreter frame.
accelerate(globals(), "greensrv._c_transport")
