"""Peer: gevent StreamServer echoing with ``makefile().readline()``, one ``sendall`` per line.

``python gevent_makefile.py PORT [--bulk]``; ``--bulk`` echoes raw bytes as they arrive.
"""

import sys

from gevent.server import StreamServer


def echo_lines(sock, address):
    rfile = sock.makefile("rb")
    try:
        for line in iter(rfile.readline, b""):
            sock.sendall(line)
    finally:
        rfile.close()


def echo_bytes(sock, address):
    while True:
        data = sock.recv(65536)
        if not data:
            break
        sock.sendall(data)


def main():
    port = int(sys.argv[1])
    handle = echo_bytes if "--bulk" in sys.argv else echo_lines
    StreamServer(("127.0.0.1", port), handle, backlog=1024).serve_forever()


if __name__ == "__main__":
    main()
