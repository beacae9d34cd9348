"""Peer: greensrv in handler style, ``for line in conn: conn.put(line)``, default ``Line`` filter.

``python greensrv_handler.py PORT [--bulk] [--workers N] [--max-accept N]``; ``--bulk`` uses
``filter=greensrv.filters.Stream()`` (the same handler then echoes byte chunks); ``--workers N``
runs a master with N workers; ``--max-accept N`` sets how many clients each worker accepts per
wake-up on the shared socket (to measure the default).
"""

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
    server = greensrv.Server(handler=echo, port=port, **options)
    server.serve_forever()


if __name__ == "__main__":
    main()
