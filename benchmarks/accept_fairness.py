"""How evenly a burst of new connections spreads over greensrv's workers.

``python benchmarks/accept_fairness.py [--workers 2] [--max-accept 1,64] [--bursts 40]
[--burst 50]`` starts the ``greensrv`` command with that many workers once per ``max_accept``
value (how many clients a worker accepts per wake-up from the shared socket), plus once with
``--reuse-port``. Each burst opens ``--burst`` connections at once, sends one line on each and
reads which worker answered. It prints, per setting, the busiest worker's share of a burst
(median and worst; 1/workers is perfectly even) and in how many bursts one worker took them all.
Loopback only; see docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "import os\n\ndef handler(conn):\n    for line in conn:\n        conn.put(str(os.getpid()))\n"
#: Runs the command with SHARED_SOCKET_MAX_ACCEPT set first (it is read in each new worker).
LAUNCH = ("import sys\nfrom greensrv import cli, workers\n"
          "workers.SHARED_SOCKET_MAX_ACCEPT = int(sys.argv[1])\nsys.exit(cli.main(sys.argv[2:]))\n")
START_TIMEOUT = 20.0  #: seconds the master may take to report its workers ready
READ_TIMEOUT = 20.0  #: seconds one reply may take on a loaded machine


def start(app_dir: Path, workers: int, max_accept: int, reuse_port: bool) -> tuple:
    argv = [sys.executable, "-c", LAUNCH, str(max_accept), "app:handler", "-b", "127.0.0.1:0",
            "-w", str(workers)] + (["--reuse-port"] if reuse_port else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(app_dir)]))
    proc = subprocess.Popen(argv, cwd=app_dir, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + START_TIMEOUT
    port = None
    assert proc.stderr is not None
    for line in proc.stderr:  # the master logs its address, then that it is ready
        found = re.search(r"serving 127\.0\.0\.1:(\d+)", line)
        port = int(found.group(1)) if found else port
        if "ready:" in line and port is not None:
            return proc, port
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"the master did not become ready: {proc.stderr.read()}")


def burst(port: int, size: int) -> collections.Counter:
    """Open ``size`` connections at once, then ask each which worker holds it."""
    socks = []
    for _ in range(size):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        socks.append(sock)
    served: collections.Counter = collections.Counter()
    for sock in socks:
        sock.settimeout(READ_TIMEOUT)
        sock.sendall(b"who\r\n")
    for sock in socks:
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(100)
            if not chunk:
                raise SystemExit("a connection closed without an answer")
            data += chunk
        served[data.strip()] += 1
        sock.close()
    return served


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-accept", default="1,64", help="comma-separated values to compare")
    ap.add_argument("--bursts", type=int, default=40)
    ap.add_argument("--burst", type=int, default=50, help="connections per burst")
    args = ap.parse_args()
    settings = [(int(v), False) for v in args.max_accept.split(",")] + [(1, True)]
    print(f"# {args.workers} workers, {args.bursts} bursts of {args.burst} connections; "
          f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print("| setting | busiest worker's share: median | worst | bursts taken by one worker |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        app_dir = Path(tmp)
        (app_dir / "app.py").write_text(APP)
        for max_accept, reuse_port in settings:
            proc, port = start(app_dir, args.workers, max_accept, reuse_port)
            try:
                shares, all_one = [], 0
                for _ in range(args.bursts):
                    served = burst(port, args.burst)
                    shares.append(max(served.values()) / args.burst)
                    all_one += len(served) == 1
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            label = "reuse_port" if reuse_port else f"shared socket, max_accept {max_accept}"
            print(f"| {label} | {statistics.median(shares):.2f} | {max(shares):.2f} | "
                  f"{all_one}/{args.bursts} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
