"""Resp's instructions per item under callgrind (load-proof, unlike timings).

    python benchmarks/resp_instructions.py [--modes ok,bulk,...] [--count N]

runs each mode twice under ``valgrind --tool=callgrind`` (0 and N items), and prints the
difference of the "Collected" counts divided by N: the instructions ``Resp`` spends per item.
Modes, each the reply or request a Redis-like server handles most:

- encode ``ok`` (``"OK"`` → ``+OK``), ``bulk`` (an 8-byte value), ``int`` (``42``), ``error``
  (a ``RespError``), ``null`` (``None``), ``bulk57`` (a 57-byte value), ``command`` (a
  3-element array of bulk strings, as a server echoes it);
- decode ``set`` and ``get``: ``feed`` of N ``SET key:000000001 vvvv...`` (20 bytes) or
  ``GET key:000000001`` requests, in 16 KiB chunks (what a pipelining client sends per read).

``python benchmarks/resp_instructions.py --run N MODE`` is the work of one run (what the
valgrind runs execute).

``python benchmarks/resp_instructions.py --server [--requests N]`` counts the whole server
instead: ``examples/redis_lite.py`` under callgrind, driven by ``redis-benchmark -P 16 -c 50
-t set,get`` with N and 6×N requests per test; the difference divided by the difference in
requests is the instructions per request (filter, connection, dispatch, the hub). Needs
valgrind and redis-benchmark (Debian ``valgrind``, ``redis-tools``). docs/benchmarks.md has
the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from greensrv.filters import Resp, RespError

ROOT = Path(__file__).resolve().parent.parent

CHUNK = 16 * 1024

REPLIES: dict[str, Any] = {
    "ok": "OK",
    "bulk": b"value:01",
    "int": 42,
    "error": RespError("ERR unknown command"),
    "null": None,
    "bulk57": b"x" * 57,
    "command": [b"SET", b"key:000000001", b"v" * 20],
}
REQUESTS = {
    "set": [b"SET", b"key:000000001", b"v" * 20],
    "get": [b"GET", b"key:000000001"],
}
MODES = [*REPLIES, *REQUESTS]


def work(count: int, mode: str) -> None:
    f = Resp()
    if mode in REQUESTS:
        wire = f.encode(REQUESTS[mode]) * count
        feed = f.feed
        got = 0
        for i in range(0, len(wire), CHUNK):
            got += len(feed(wire[i : i + CHUNK]))
        if got != count:
            raise SystemExit(f"decoded {got} requests of {count}")
    else:
        encode = f.encode
        reply = REPLIES[mode]
        for _ in range(count):
            encode(reply)


def collected(count: int, mode: str) -> int:
    out = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         __file__, "--run", str(count), mode],
        capture_output=True, text=True, check=True).stderr
    match = re.search(r"Collected : (\d+)", out)
    if match is None:
        raise SystemExit(f"no count from callgrind:\n{out}")
    return int(match.group(1))


def server_collected(requests: int) -> int:
    """redis_lite's count under callgrind for ``requests`` SET and as many GET requests."""
    import run  # benchmarks/run.py: a free port

    port = run.free_port()
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")  # the same start-up for both loads
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
         str(ROOT / "examples" / "redis_lite.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 120  # valgrind starts the interpreter ~50x slower
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("redis_lite did not start under valgrind") from None
                time.sleep(0.2)  # poll interval while valgrind starts
        subprocess.run(["redis-benchmark", "-p", str(port), "-P", "16", "-c", "50", "-n",
                        str(requests), "-t", "set,get", "-q"],
                       check=True, stdout=subprocess.DEVNULL, timeout=600)
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=120)
    match = re.search(r"Collected : (\d+)", err)
    if match is None:
        raise SystemExit(f"no count from callgrind:\n{err}")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--run", nargs=2, metavar=("N", "MODE"))
    parser.add_argument("--server", action="store_true",
                        help="count examples/redis_lite.py per request under redis-benchmark")
    parser.add_argument("--requests", type=int, default=2_000,
                        help="--server: requests per test of the small load (the large is 6x)")
    args = parser.parse_args()
    if args.server:
        small, large = args.requests, 6 * args.requests
        per_request = (server_collected(large) - server_collected(small)) / (2 * (large - small))
        print(f"redis_lite {per_request:8.0f} instructions per request "
              f"(redis-benchmark -P 16, SET and GET)", flush=True)
        return
    if args.run:
        work(int(args.run[0]), args.run[1])
        return
    for mode in args.modes.split(","):
        if mode not in MODES:
            raise SystemExit(f"--modes: unknown mode {mode!r} (known: {', '.join(MODES)})")
        per_item = (collected(args.count, mode) - collected(0, mode)) / args.count
        print(f"{mode:8} {per_item:8.0f} instructions per "
              f"{'request' if mode in REQUESTS else 'reply'}", flush=True)


if __name__ == "__main__":
    main()
