"""Echo server in POE's callback style: each input line is put back to the client.

POE::Component::Server::TCP's smallest example is a ``ClientInput`` callback that puts ``ARG0``
back; greensrv's ``client_input`` callback is the same thing. No handler is needed: the server
runs the callback once per line in the client's own greenlet.

    python examples/echo.py [--host 127.0.0.1] [--port 12345]
"""

from __future__ import annotations

import argparse
import logging

import greensrv

log = logging.getLogger("echo")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Line echo server (POE callback style).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="TCP port (default %(default)s)")
    args = parser.parse_args(argv)
    server = greensrv.Server(
        host=args.host,
        port=args.port,
        client_input=lambda conn, line: conn.put(line),
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
