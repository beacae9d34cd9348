"""Peer: a hand-written gevent StreamServer line echo (recv, split, sendall of the joined replies).

The floor greensrv must reach. ``python gevent_loop.py PORT [--bulk]``; ``--bulk`` echoes raw
bytes as they arrive.
"""

import sys

from gevent.server import StreamServer


def echo_lines(sock, address):
    pending = b""
    recv = sock.recv
    while True:
        data = recv(65536)
        if not data:
            break
        lines = (pending + data).split(b"\r\n")
        pending = lines.pop()
        if lines:
            sock.sendall(b"".join([line + b"\r\n" for line in lines]))


def echo_bytes(sock, address):
    recv = sock.recv
    while True:
        data = recv(65536)
        if not data:
            break
        sock.sendall(data)


def main():
    port = int(sys.argv[1])
    handle = echo_bytes if "--bulk" in sys.argv else echo_lines
    StreamServer(("127.0.0.1", port), handle, backlog=1024).serve_forever()


if __name__ == "__main__":
    main()
