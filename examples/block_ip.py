"""mod_perl's MyApache::BlockIP2: refuse listed client addresses before doing any work.

A ``PerlPreConnectionHandler`` runs right after accept, before any protocol code; BlockIP2 looks
the client's address up in a blocklist and returns ``FORBIDDEN``, so Apache drops the connection
without a byte of reply. greensrv's ``client_pre_connect(sock, address)`` runs at the same point
(no Connection object, filter or handler greenlet work yet): returning ``None`` drops the client.

Allowed clients get a greeting naming their address and then a line echo.

    python examples/block_ip.py --block 127.0.0.1 --block 10.0.0.4 [--host H] [--port 12345]

The blocklist comes from repeated ``--block`` options here; a real server would read a file or a
database, as the mod_perl text suggests.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

import greensrv

log = logging.getLogger("block_ip")


def make_pre_connect(blocked: set[str]) -> Any:
    """Return a ``client_pre_connect`` callback that drops clients whose IP is in ``blocked``."""

    def pre_connect(sock: Any, address: Any) -> Any:
        ip = address[0] if isinstance(address, tuple) else address
        if ip in blocked:
            log.warning("IP %s is blocked", ip)
            return None
        return sock

    return pre_connect


def greet_and_echo(conn: greensrv.Connection) -> None:
    """Serve an allowed client: a greeting with its address, then echo lines until EOF."""
    conn.put(f"Hello {conn.remote_ip}")
    for line in conn:
        conn.put(line)


def make_server(host: str = "127.0.0.1", port: int = 12345,
                blocked: frozenset[str] = frozenset()) -> greensrv.Server:
    return greensrv.Server(
        greet_and_echo,
        host=host,
        port=port,
        client_pre_connect=make_pre_connect(set(blocked)),
        started=lambda server: log.info("blocking %s", ", ".join(sorted(blocked)) or "nobody"),
    )


#: The example as the ``greensrv`` command runs it: ``greensrv examples/block_ip.py:server``.
server = make_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Echo server with a pre-connect IP blocklist "
                                                 "(mod_perl's BlockIP2).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="TCP port (default %(default)s)")
    parser.add_argument("--block", action="append", default=[], metavar="IP",
                        help="refuse clients from this address (repeatable)")
    args = parser.parse_args(argv)
    make_server(args.host, args.port, frozenset(args.block)).serve_forever()


if __name__ == "__main__":
    main()
