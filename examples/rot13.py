"""ROT13 server: the POE::Component::Server::TCP synopsis, written as a greensrv handler.

Every client is greeted with "Smile from the server!" and then gets each line it sends back in
ROT13. The handler owns one client from connect to EOF; its ``for`` loop is the POE
``ClientInput`` callback and the ``put`` before it is ``ClientConnected``'s banner.

    python examples/rot13.py [--host 127.0.0.1] [--port 12345]
    nc localhost 12345

SIGTERM or Ctrl-C stops it gracefully: no new clients, live ones get their replies flushed.
"""

from __future__ import annotations

import argparse
import codecs
import logging

import greensrv

log = logging.getLogger("rot13")


def rot13(conn: greensrv.Connection) -> None:
    """Serve one client: a banner, then one ROT13 reply per input line, until EOF."""
    log.info("got a connection from %s", conn.remote_ip)
    conn.put("Smile from the server!")
    for line in conn:
        conn.put(codecs.encode(line, "rot13"))


def make_server(host: str = "127.0.0.1", port: int = 12345) -> greensrv.Server:
    return greensrv.Server(rot13, host=host, port=port)


#: The example as the ``greensrv`` command runs it: ``greensrv examples/rot13.py:server``.
server = make_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ROT13 line server (the POE synopsis).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="TCP port (default %(default)s)")
    args = parser.parse_args(argv)
    make_server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
