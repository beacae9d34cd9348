"""Many idle connections, opened and held by plain non-blocking sockets and one epoll set.

    python idle_horde.py PORT N SOURCES [BATCH]

Opens N connections to 127.0.0.1:PORT from SOURCES loopback addresses (127.0.0.11, .12, ...; a
source address has some 28,000 ephemeral ports, so 100,000 connections need four or more),
at most BATCH (default 512) connecting or awaiting their echo at a time, so the server's backlog
never overflows. Each connection sends one line and must get it back (then the server holds it as
a live, idle client). Prints one JSON line once all are established: ``{"event": "ready",
"established": n, "errors": n, "seconds": s, "first_error": "..."}``; then holds every
connection open until stdin closes or a line arrives, and exits 0.

No gevent and no per-connection objects beyond the socket: the client side must cost less than
the server it measures.
"""

from __future__ import annotations

import json
import os
import resource
import select
import socket
import sys
import time

#: Seconds without any connection progressing after which the horde gives up on the rest.
STALL = 30.0
LINE = b"idle\n"
ECHO = b"idle\r\n"


def main() -> None:
    port, n, sources = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    ep = select.epoll()
    socks: dict[int, socket.socket] = {}  # fd -> socket, every connection opened
    got: dict[int, bytes] = {}  # fd -> echo bytes so far, while awaiting the echo
    opened = established = errors = 0
    first_error = ""
    start = time.monotonic()

    def fail(fd: int, what: str) -> None:
        nonlocal errors, first_error
        errors += 1
        first_error = first_error or what
        ep.unregister(fd)
        got.pop(fd, None)
        socks.pop(fd).close()

    last_progress = time.monotonic()
    while established + errors < n:
        if time.monotonic() - last_progress > STALL:
            first_error = first_error or f"no progress for {STALL:g} s"
            errors += n - established - errors
            break
        while opened < n and len(got) < batch:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            if sources:
                sock.bind((f"127.0.0.{11 + opened % sources}", 0))
            try:
                sock.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fd = sock.fileno()
            socks[fd] = sock
            got[fd] = b""
            ep.register(fd, select.EPOLLOUT)
            opened += 1
        for fd, events in ep.poll(1.0):
            last_progress = time.monotonic()
            sock = socks[fd]
            if events & select.EPOLLOUT:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(fd, f"connect: {os.strerror(err)}")
                    continue
                sock.send(LINE)
                ep.modify(fd, select.EPOLLIN)
                continue
            try:
                data = sock.recv(64)
            except OSError as exc:
                fail(fd, f"recv: {exc}")
                continue
            if not data:
                fail(fd, "the server closed an idle connection")
                continue
            got[fd] += data
            if len(got[fd]) >= len(ECHO):
                if got[fd] != ECHO:
                    fail(fd, f"wrong echo {got[fd]!r}")
                    continue
                del got[fd]
                ep.unregister(fd)
                established += 1
    print(json.dumps({"event": "ready", "established": established, "errors": errors,
                      "seconds": time.monotonic() - start, "first_error": first_error}),
          flush=True)
    sys.stdin.readline()  # hold until the test says so (or goes away)
    for sock in socks.values():
        sock.close()


if __name__ == "__main__":
    main()
