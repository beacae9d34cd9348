"""mod_perl's MyApache::EchoSocket: echo raw bytes until the client sends only newlines.

The mod_perl handler reads up to 1024 bytes at a time from the connection's socket, stops when
the read returns nothing or the data is nothing but ``\\r``/``\\n`` characters (an empty line
typed into telnet), and sends everything else back unchanged. Here the ``Stream`` filter hands
the handler each chunk exactly as it was read, so the same test applies to the same chunks.
Returning from the handler closes the connection gracefully, like returning ``Apache::OK``.

    python examples/echo_socket.py [--host 127.0.0.1] [--port 8010]
"""

from __future__ import annotations

import argparse
import logging

import greensrv
from greensrv.filters import Stream

log = logging.getLogger("echo_socket")


def only_newlines(chunk: bytes) -> bool:
    """True for a non-empty chunk made of ``\\r`` and ``\\n`` alone (Perl's ``/^[\\r\\n]+$/``)."""
    return bool(chunk) and not chunk.strip(b"\r\n")


def echo_socket(conn: greensrv.Connection) -> None:
    """Echo each chunk as it arrives; the loop also ends at EOF (mod_perl's ``$rlen <= 0``)."""
    for chunk in conn:
        if only_newlines(chunk):
            break
        conn.put(chunk)


def make_server(host: str = "127.0.0.1", port: int = 8010) -> greensrv.Server:
    return greensrv.Server(
        echo_socket,
        host=host,
        port=port,
        filter=Stream(),
    )


#: The example as the ``greensrv`` command runs it: ``greensrv examples/echo_socket.py:server``.
server = make_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Raw byte echo (mod_perl's EchoSocket).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=8010, help="TCP port (default %(default)s)")
    args = parser.parse_args(argv)
    make_server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
