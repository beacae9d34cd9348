"""How long a Prometheus scrape of ``/metrics`` takes with many workers and live connections.

``python benchmarks/metrics_scrape.py [--workers 8] [--connections 10000] [--scrapes 50]``
starts ``greensrv -w N --admin-bind`` over an echo application that also counts its lines with
a prometheus_client counter, opens the idle connections, waits until ``greensrv_connections``
reports all of them (the workers report every second), then times sequential scrapes from this
process. Timed, so it varies with the machine's load: run it on a quiet machine, and read the
median.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

APP = '''\
from prometheus_client import Counter

LINES = Counter("scrape_app_lines", "Lines echoed")


def handler(conn):
    for line in conn:
        LINES.inc()
        conn.put(line)
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(port: int) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
        return reply.read()


def live(page: bytes) -> int:
    match = re.search(rb"^greensrv_connections (\S+)$", page, flags=re.M)
    return int(float(match.group(1))) if match else -1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--scrapes", type=int, default=50)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 100:
        raise SystemExit(f"needs {args.connections + 100} descriptors; the limit is {hard}")
    port, admin = free_port(), free_port()
    with tempfile.TemporaryDirectory() as directory:
        Path(directory, "scrape_app.py").write_text(APP)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [directory, str(Path(__file__).resolve().parents[1])]))
        master = subprocess.Popen(
            [sys.executable, "-m", "greensrv", "-w", str(args.workers), "-b",
             f"127.0.0.1:{port}", "--admin-bind", f"127.0.0.1:{admin}", "--log-level",
             "warning", "scrape_app:handler"], cwd=directory, env=env)
        clients: list[socket.socket] = []
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    scrape(admin)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)  # polling for the master's start
            for _ in range(args.connections):
                clients.append(socket.create_connection(("127.0.0.1", port), timeout=30))
            deadline = time.monotonic() + 60
            while live(scrape(admin)) != args.connections:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {live(scrape(admin))} connections reported")
                time.sleep(0.2)  # polling for the workers' reports
            times, size = [], 0
            for _ in range(args.scrapes):
                began = time.perf_counter()
                size = len(scrape(admin))
                times.append(time.perf_counter() - began)
        finally:
            for sock in clients:
                sock.close()
            master.terminate()
            master.wait(timeout=60)
    times.sort()
    print(f"/metrics with {args.workers} workers and {args.connections} live connections, "
          f"{args.scrapes} scrapes of {size} bytes: median {statistics.median(times) * 1e3:.2f} "
          f"ms, p90 {times[int(len(times) * 0.9)] * 1e3:.2f} ms, max {times[-1] * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
