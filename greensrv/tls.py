"""TLS helpers: a server context with modern defaults and cooperative socket wrapping.

The stdlib's ``SSLContext.wrap_socket`` makes a blocking socket whose handshake would freeze
every client at once; :func:`wrap_server_socket` wraps through gevent's cooperative SSL instead
and leaves the handshake to the client's own greenlet, where the server bounds it with
``handshake_timeout``.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from typing import Any

import gevent.ssl

from .errors import TLSError

__all__ = ["describe_client_handshake_failure", "load_cert_chain", "server_context",
           "wrap_client_socket", "wrap_server_socket"]


def server_context(certfile: str, keyfile: str | None = None, *, cafile: str | None = None,
                   require_client_cert: bool = False) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or later, the certificate chain loaded.

    With ``cafile``, client certificates signed by it are verified when presented (required
    when ``require_client_cert``), and ``conn.peer_certificate`` reports them.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    load_cert_chain(context, certfile, keyfile)
    if cafile is not None:
        _must_exist(cafile, "cafile", "CA certificates")
        try:
            context.load_verify_locations(cafile)
        except ssl.SSLError as exc:
            raise ssl.SSLError(exc.errno, f"cafile {cafile!r}: no usable PEM CA certificate "
                                          f"({exc.reason or exc})") from exc
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("require_client_cert needs cafile to verify client certificates against")
    return context


def load_cert_chain(context: ssl.SSLContext, certfile: str, keyfile: str | None = None) -> None:
    """``context.load_cert_chain`` with errors that name the file and the option.

    OpenSSL reports a missing file as a bare ``[Errno 2]`` and a wrong one as ``[SSL] PEM lib``;
    here a missing file is a ``FileNotFoundError`` with its name, and an unusable one an
    ``ssl.SSLError`` that says which file and what it should hold.
    """
    _must_exist(certfile, "certfile", "certificate")
    if keyfile is not None:
        _must_exist(keyfile, "keyfile", "private key")
    try:
        context.load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        files = f"certfile {certfile!r}" + (f" with keyfile {keyfile!r}" if keyfile else "")
        raise ssl.SSLError(exc.errno, f"{files}: not a PEM certificate and its matching private "
                                      f"key ({exc.reason or exc})") from exc


def _must_exist(path: str, option: str, what: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, f"{option}: {what} file not found", path)


def wrap_server_socket(sock: Any, context: ssl.SSLContext) -> Any:
    """Wrap an accepted socket for TLS without handshaking (gevent's cooperative SSLSocket).

    Use it in ``client_pre_connect`` to TLS-wrap conditionally; the connection performs the
    handshake in the client's greenlet under ``handshake_timeout``.
    """
    return gevent.ssl.SSLSocket(sock=sock, server_side=True, do_handshake_on_connect=False,
                                suppress_ragged_eofs=True, _context=context)


def wrap_client_socket(sock: Any, context: ssl.SSLContext, server_hostname: str | None,
                       where: str) -> Any:
    """Wrap a connected socket for a client handshake (not done yet) with ``server_hostname``.

    TLSError naming ``where`` (the address) when the context checks host names and no name
    is given: the check would fail anyway, with a less helpful message.
    """
    if context.check_hostname and not server_hostname:
        raise TLSError(f"TLS to {where}: the context checks host names, so server_hostname "
                       "is needed (or set check_hostname=False on the context)")
    return gevent.ssl.SSLSocket(sock=sock, server_side=False, server_hostname=server_hostname,
                                do_handshake_on_connect=False, suppress_ragged_eofs=True,
                                _context=context)


def describe_client_handshake_failure(where: str, exc: BaseException) -> str:
    """A message a person understands for a failed client handshake with ``where``."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = f"certificate verification failed: {exc.verify_message or text}"
    elif isinstance(exc, socket.timeout | TimeoutError) or "timed out" in text:
        reason = "the server sent no complete handshake in time"
    elif "WRONG_VERSION_NUMBER" in text or "RECORD_LAYER" in text:
        reason = f"the server does not speak TLS: {text}"
    elif isinstance(exc, ssl.SSLEOFError | ConnectionError) or "EOF" in text:
        reason = f"the server closed the connection during the handshake ({text})"
    else:
        reason = text
    return f"TLS handshake with {where} failed: {reason}"
