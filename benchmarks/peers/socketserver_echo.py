"""Peer: the stdlib ``socketserver.ThreadingTCPServer``, one thread per client.

``python socketserver_echo.py PORT [--bulk]``. Line mode reads ``self.rfile`` line by line and
writes each line to the unbuffered ``self.wfile``; ``--bulk`` uses ``recv``/``sendall``.
The listen backlog is raised from socketserver's default of 5 to 1024, like the other peers.
"""

import socketserver
import sys


class LineEcho(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


class ByteEcho(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


def main():
    port = int(sys.argv[1])
    handler = ByteEcho if "--bulk" in sys.argv else LineEcho
    with Server(("127.0.0.1", port), handler) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
