"""Peer: greensrv's handler-style echo, ``--proxy`` expecting a PROXY v2 header on each connection.

``python greensrv_proxy.py PORT [--proxy]``; used by ``benchmarks/proxy_churn.py`` behind HAProxy.
"""

import sys

import greensrv


def echo(conn):
    for line in conn:
        conn.put(line)


def main():
    port = int(sys.argv[1])
    options = {"proxy_protocol": "v2"} if "--proxy" in sys.argv else {}
    greensrv.Server(handler=echo, port=port, **options).serve_forever()


if __name__ == "__main__":
    main()
