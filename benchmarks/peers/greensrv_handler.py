"""Peer: greensrv in handler style, ``for line in conn: conn.put(line)``, default ``Line`` filter.

``python greensrv_handler.py PORT [--bulk] [--workers N] [--max-accept N] [--admin]
[--access-log]``; ``--bulk`` uses ``filter=greensrv.filters.Stream()`` (the same handler then
echoes byte chunks); ``--workers N`` runs a master with N workers; ``--max-accept N`` sets how
many clients each worker accepts per wake-up on the shared socket (to measure the default);
``--admin`` serves the admin endpoint on a free loopback port and ``--access-log`` writes the
connection log to /dev/null (what they cost: docs/operations.md).
"""

import os
import sys

import greensrv


def echo(conn):
    for line in conn:
        conn.put(line)


def flag(name):
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else None


def main():
    port = int(sys.argv[1])
    options = {"filter": greensrv.filters.Stream()} if "--bulk" in sys.argv else {}
    if flag("--workers") is not None:
        options["workers"] = flag("--workers")
    if flag("--max-accept") is not None:
        from greensrv import workers

        workers.SHARED_SOCKET_MAX_ACCEPT = flag("--max-accept")
    if "--admin" in sys.argv:
        options["admin"] = "127.0.0.1:0"
    if "--access-log" in sys.argv:
        from greensrv.access_log import route_access_log

        route_access_log(os.devnull)
        options["access_log"] = True
    server = greensrv.Server(handler=echo, port=port, **options)
    server.serve_forever()


if __name__ == "__main__":
    main()
