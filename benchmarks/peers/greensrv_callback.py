"""Peer: greensrv in callback style, ``client_input=lambda conn, line: conn.put(line)``.

``python greensrv_callback.py PORT [--bulk] [--no-idle-greenlets]``; ``--bulk`` uses
``filter=greensrv.filters.Stream()``. Default ``Line`` filter otherwise.
``--no-idle-greenlets``: ``idle_greenlets=False`` (an idle connection holds no greenlet).
"""

import sys

import greensrv


def main():
    port = int(sys.argv[1])
    options = {"filter": greensrv.filters.Stream()} if "--bulk" in sys.argv else {}
    if "--no-idle-greenlets" in sys.argv:
        options["idle_greenlets"] = False
    server = greensrv.Server(client_input=lambda conn, line: conn.put(line), port=port, **options)
    server.serve_forever()


if __name__ == "__main__":
    main()
