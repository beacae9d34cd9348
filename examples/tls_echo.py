"""TLS line echo, two ways: the ``ssl_context`` option, or wrapping in ``client_pre_connect``.

By default the server is given ``ssl_context=`` and wraps every accepted socket itself, with
gevent's cooperative SSL, handshaking in the client's greenlet under a timeout.

``--pre-connect`` shows POE's SSLify pattern instead: ``ClientPreConnect`` receives the raw
socket and returns an SSL-wrapped one. The wrapping must use gevent's SSL (``gevent.ssl``), not
the stdlib's, whose handshake would block the whole process, and it must not handshake during
the wrap (``do_handshake_on_connect=False``): the connection handshakes afterwards, in the
client's own greenlet, so a slow or silent client holds up nobody else.

Protocol: every line comes back; ``quit`` gets ``B'bye!`` and a clean TLS close.

    python examples/tls_echo.py --cert cert.pem --key key.pem [--pre-connect] [--port 12345]
    openssl s_client -connect 127.0.0.1:12345 -quiet

A throwaway certificate for trying it:

    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj /CN=localhost \\
        -keyout key.pem -out cert.pem
"""

from __future__ import annotations

import argparse
import logging
import ssl
from typing import Any

import gevent.ssl

import greensrv
import greensrv.tls

log = logging.getLogger("tls_echo")


def echo(conn: greensrv.Connection) -> None:
    """Echo lines until EOF or ``quit``."""
    for line in conn:
        if line == "quit":
            conn.put("B'bye!")
            return  # returning shuts the connection down: reply flushed, close_notify, FIN
        conn.put(line)


def server_context(cert: str, key: str) -> gevent.ssl.SSLContext:
    """A server-side context from gevent's SSL module: cooperative sockets, modern defaults."""
    ctx = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    greensrv.tls.load_cert_chain(ctx, cert, key)  # errors name the file
    return ctx


def make_sslify(ctx: gevent.ssl.SSLContext) -> Any:
    """Return a ``client_pre_connect`` callback that wraps each socket in TLS (POE's SSLify)."""

    def sslify(sock: Any, address: Any) -> Any:
        try:
            return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:  # POE's example: return undef if SSLify died
            log.warning("cannot wrap the socket of %s: %s", address, exc)
            return None

    return sslify


#: The example as the ``greensrv`` command runs it, TLS from its flags: ``greensrv
#: examples/tls_echo.py:server --certfile cert.pem --keyfile key.pem``.
server = greensrv.Server(echo, port=12345)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="TLS line echo server.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="TCP port (default %(default)s)")
    parser.add_argument("--cert", required=True, help="PEM certificate chain")
    parser.add_argument("--key", required=True, help="PEM private key")
    parser.add_argument("--pre-connect", action="store_true",
                        help="wrap sockets in client_pre_connect instead of using ssl_context")
    args = parser.parse_args(argv)
    try:
        ctx = server_context(args.cert, args.key)
    except (OSError, ValueError) as exc:  # a missing or unusable file: say which, no traceback
        parser.error(str(exc))
    tls: dict[str, Any] = (
        {"client_pre_connect": make_sslify(ctx)} if args.pre_connect else {"ssl_context": ctx}
    )
    greensrv.serve_forever(
        echo,
        host=args.host,
        port=args.port,
        started=lambda server: log.info("TLS via %s", next(iter(tls))),
        **tls,
    )


if __name__ == "__main__":
    main()
