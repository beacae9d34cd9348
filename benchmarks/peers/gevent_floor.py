"""Peer: the least that greensrv's handler shape can cost on gevent, written by hand.

``for line in conn: conn.put(line)`` forces two things on any implementation, however lean:
records are ``str`` (decoded, then encoded back), and each reply goes through a Python method
call (``put`` must check and count what it queues, so it cannot be a bare ``list.append``). This
server is the hand loop (``gevent_loop.py``) plus exactly those two and nothing else: lines are
handed out by C iterators (a chain over each read's list of lines, not a generator step per
line), and there is no watermark, output limit, filter object, timeout or statistic. Its ratio to
the hand loop bounds what greensrv's handler style could reach; it is a yardstick for the
framework's cost, not a server anyone should write.

``python gevent_floor.py PORT [--bulk]``; ``--bulk`` hands out and puts raw byte chunks.
"""

import sys
from itertools import chain

from gevent.server import StreamServer


class FloorConnection:
    """Iterate to get lines; put() queues a reply; the queue is sent before the next read."""

    def __init__(self, sock, bulk):
        self.sock = sock
        self.bulk = bulk
        self.out = []

    def put(self, record):
        self.out.append(record)

    def _send_queued(self):
        out = self.out
        if self.bulk:
            self.sock.sendall(b"".join(out))
        else:
            out.append("")  # so the join ends with a terminator too
            self.sock.sendall("\r\n".join(out).encode())
        out.clear()

    def __iter__(self):
        return chain.from_iterable(self._batches())

    def _batches(self):
        """One list of records per read (a generator step per read, not per record)."""
        recv = self.sock.recv
        pending = ""
        while True:
            if self.out:
                self._send_queued()
            data = recv(65536)
            if not data:
                return
            if self.bulk:
                yield (data,)
                continue
            lines = (pending + data.decode()).split("\r\n")
            pending = lines.pop()
            yield lines


def echo(sock, address, bulk=False):
    conn = FloorConnection(sock, bulk)
    for line in conn:
        conn.put(line)


def echo_bulk(sock, address):
    echo(sock, address, bulk=True)


def main():
    port = int(sys.argv[1])
    handle = echo_bulk if "--bulk" in sys.argv else echo
    StreamServer(("127.0.0.1", port), handle, backlog=1024).serve_forever()


if __name__ == "__main__":
    main()
