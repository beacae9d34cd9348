"""TLS helpers: a server context with modern defaults and cooperative socket wrapping.

The stdlib's ``SSLContext.wrap_socket`` makes a blocking socket whose handshake would freeze
every client at once; :func:`wrap_server_socket` wraps through gevent's cooperative SSL instead
and leaves the handshake to the client's own greenlet, where the server bounds it with
``handshake_timeout``.
"""

from __future__ import annotations

import ssl
from typing import Any

import gevent.ssl

__all__ = ["server_context", "wrap_server_socket"]


def server_context(certfile: str, keyfile: str | None = None, *, cafile: str | None = None,
                   require_client_cert: bool = False) -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or later, the certificate chain loaded.

    With ``cafile``, client certificates signed by it are verified when presented (required
    when ``require_client_cert``), and ``conn.peer_certificate`` reports them.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    if cafile is not None:
        context.load_verify_locations(cafile)
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    elif require_client_cert:
        raise ValueError("require_client_cert needs cafile to verify client certificates against")
    return context


def wrap_server_socket(sock: Any, context: ssl.SSLContext) -> Any:
    """Wrap an accepted socket for TLS without handshaking (gevent's cooperative SSLSocket).

    Use it in ``client_pre_connect`` to TLS-wrap conditionally; the connection performs the
    handshake in the client's greenlet under ``handshake_timeout``.
    """
    return gevent.ssl.SSLSocket(sock=sock, server_side=True, do_handshake_on_connect=False,
                                suppress_ragged_eofs=True, _context=context)
