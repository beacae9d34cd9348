"""Peer: greensrv in callback style, ``client_input=lambda conn, line: conn.put(line)``.

``python greensrv_callback.py PORT [--bulk]``; ``--bulk`` uses
``filter=greensrv.filters.Stream()``. Default ``Line`` filter otherwise.
"""

import sys

import greensrv


def main():
    port = int(sys.argv[1])
    options = {"filter": greensrv.filters.Stream()} if "--bulk" in sys.argv else {}
    server = greensrv.Server(client_input=lambda conn, line: conn.put(line), port=port, **options)
    server.serve_forever()


if __name__ == "__main__":
    main()
