"""Peer: greensrv in handler style, ``for line in conn: conn.put(line)``, default ``Line`` filter.

``python greensrv_handler.py PORT [--bulk]``; ``--bulk`` uses ``filter=greensrv.filters.Stream()``
(the same handler then echoes byte chunks).
"""

import sys

import greensrv


def echo(conn):
    for line in conn:
        conn.put(line)


def main():
    port = int(sys.argv[1])
    options = {"filter": greensrv.filters.Stream()} if "--bulk" in sys.argv else {}
    server = greensrv.Server(handler=echo, port=port, **options)
    server.serve_forever()


if __name__ == "__main__":
    main()
