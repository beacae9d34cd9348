"""A hand-written gevent TCP pump: the floor tcp_proxy is measured against.

Each client gets a ``create_connection`` to the upstream and two greenlets copying
``recv(65536)`` to ``sendall`` (which blocks, so each direction has its own backpressure), with a
half-close when one side ends. No filter, watermark, timeout or statistic.

    python benchmarks/peers/gevent_pump.py PORT UPSTREAM_PORT
"""

from __future__ import annotations

import signal
import socket
import sys

import gevent
from gevent.server import StreamServer
from gevent.socket import create_connection


def copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def main() -> None:
    port, upstream_port = int(sys.argv[1]), int(sys.argv[2])

    def handle(client: socket.socket, address: object) -> None:
        with create_connection(("127.0.0.1", upstream_port)) as upstream:
            back = gevent.spawn(copy, upstream, client)
            copy(client, upstream)
            back.join()

    server = StreamServer(("127.0.0.1", port), handle)
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, server.stop, 0)  # exit 0, as the other peers do
    server.serve_forever()


if __name__ == "__main__":
    main()
