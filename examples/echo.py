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


def make_server(host: str = "127.0.0.1", port: int = 12345) -> greensrv.Server:
    return greensrv.Server(
        host=host,
        port=port,
        client_input=lambda conn, line: conn.put(line),
    )


#: The example as the ``greensrv`` command runs it: ``greensrv examples/echo.py:server``.
server = make_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Line echo server (POE callback style).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="TCP port (default %(default)s)")
    args = parser.parse_args(argv)
    make_server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
