"""Many short-lived bad clients, in their own process so their work is not charged to the test.

    python bad_clients.py HOST PORT N KIND CONCURRENCY SOURCES

N clients, at most CONCURRENCY at a time, each from one of SOURCES loopback addresses
(127.0.2.1, 127.0.2.2, ... in turn): connect, send KIND's bytes, read until the server closes,
close. KIND ``plaintext``: an HTTP request, for a TLS port (the handshake fails); ``garbage``:
a line that is not UTF-8, for a plaintext line server (a malformed record). Prints one JSON line
at the end: ``{"done": n, "errors": n, "first_error": "...", "seconds": s}``.
"""

from __future__ import annotations

import json
import socket
import sys
import time

import gevent
import gevent.socket

PAYLOADS = {
    "plaintext": b"GET / HTTP/1.0\r\nHost: example\r\n\r\n",
    "garbage": b"\xff\xfe\x00 not utf-8 \xc3\x28\n",
}
#: Seconds one client may take: far above a loopback round trip.
TIMEOUT = 20.0


def main() -> None:
    host, port, n, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    concurrency, sources = int(sys.argv[5]), int(sys.argv[6])
    payload = PAYLOADS[kind]
    started = time.monotonic()
    next_client = [0]
    done = [0]
    errors: list[str] = []

    def one(i: int) -> None:
        sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.bind((f"127.0.2.{1 + i % sources}", 0))
            sock.connect((host, port))
            sock.sendall(payload)
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass  # the server closed with unread input: a reset is its answer too
        except OSError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            sock.close()
        done[0] += 1

    def worker() -> None:
        while next_client[0] < n:
            i = next_client[0]
            next_client[0] += 1
            one(i)

    gevent.joinall([gevent.spawn(worker) for _ in range(concurrency)])
    print(json.dumps({"done": done[0], "errors": len(errors),
                      "first_error": errors[0] if errors else "",
                      "seconds": time.monotonic() - started}), flush=True)


if __name__ == "__main__":
    main()
