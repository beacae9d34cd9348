"""The client side measured: tcp_proxy's bulk throughput and redis_lite under redis-benchmark.

``python benchmarks/proxy_and_redis.py`` runs, in the same session and interleaved (A B C A B C
...), each a fresh process per run:

- **bulk through a proxy**: the C load generator's ``bulk`` scenario (a verified pseudo-random
  byte stream echoed over 10 connections) against the C echo peer, through
  ``examples/tcp_proxy.py``, a hand-written gevent pump (``peers/gevent_pump.py``), ``socat`` and
  HAProxy in ``mode tcp``; MB/s, and each as a ratio to the gevent pump;
- **redis**: ``redis-benchmark -P 16`` (SET, GET, INCR) against ``examples/redis_lite.py`` and a
  real ``redis-server``; requests/s and redis_lite's ratio to redis-server.

A peer whose program is missing is skipped with the reason printed. Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import build, parse_result  # noqa: E402 - the load generator and its build

START_TIMEOUT = 20.0  #: seconds a peer may take to listen
HAPROXY_CONFIG = """global
    maxconn 1000
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend bench
    bind 127.0.0.1:{port}
    default_backend echo
backend echo
    server echo 127.0.0.1:{upstream}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{proc.args} did not listen") from None
            time.sleep(0.02)  # poll interval


def start(argv: list[str], port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    wait_listening(port, proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def proxies(workdir: Path) -> dict[str, tuple[str | None, Callable[[int, int], list[str]]]]:
    """name -> (why it cannot run, or None; argv maker (port, upstream port))."""
    py = sys.executable
    haproxy_cfg = workdir / "haproxy.cfg"

    def haproxy(port: int, upstream: int) -> list[str]:
        haproxy_cfg.write_text(HAPROXY_CONFIG.format(port=port, upstream=upstream))
        return ["haproxy", "-db", "-f", str(haproxy_cfg)]

    return {
        "gevent_pump": (None, lambda p, u: [py, str(HERE / "peers" / "gevent_pump.py"),
                                            str(p), str(u)]),
        "tcp_proxy": (None, lambda p, u: [py, str(ROOT / "examples" / "tcp_proxy.py"),
                                          "--port", str(p), "--upstream", f"127.0.0.1:{u}"]),
        "socat": (None if shutil.which("socat") else "socat is not installed",
                  lambda p, u: ["socat", f"TCP-LISTEN:{p},bind=127.0.0.1,reuseaddr,fork",
                                f"TCP:127.0.0.1:{u}"]),
        "haproxy": (None if shutil.which("haproxy") else "haproxy is not installed", haproxy),
    }


def bench_proxies(repeat: int, nbytes: int) -> dict[str, list[float]]:
    loadgen = build()
    echo_port = free_port()
    echo = start([str(loadgen.parent / "c_echo"), str(echo_port)], echo_port)
    results: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            table = proxies(Path(tmp))
            for name, (why, _) in table.items():
                if why:
                    print(f"skipping {name}: {why}")
            for _ in range(repeat):
                for name, (why, argv) in table.items():
                    if why:
                        continue
                    port = free_port()
                    proc = start(argv(port, echo_port), port)
                    try:
                        done = subprocess.run(
                            [str(loadgen), "--host", "127.0.0.1", "--port", str(port),
                             "--scenario", "bulk", "--conns", "10", "--bytes", str(nbytes),
                             "--warmup-bytes", str(nbytes // 20), "--timeout", "300"],
                            capture_output=True, text=True, timeout=320)
                        result = parse_result(done.stdout)
                        if done.returncode != 0 or result.get("errors"):
                            raise RuntimeError(f"{name}: byte errors: {done.stderr[-500:]}")
                        results.setdefault(name, []).append(float(result["mb_per_s"]))
                        print(f"bulk {name}: {result['mb_per_s']:.0f} MB/s", flush=True)
                    finally:
                        stop(proc)
    finally:
        stop(echo)
    return results


def redis_benchmark(port: int, requests: int) -> dict[str, float]:
    done = subprocess.run(
        ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-P", "16", "-c", "50",
         "-n", str(requests), "-t", "set,get,incr", "-q"],
        capture_output=True, text=True, timeout=600)
    rates = {}
    for line in done.stdout.replace("\r", "\n").splitlines():
        match = re.match(r"(\w+): ([\d.]+) requests per second", line.strip())
        if match:
            rates[match.group(1)] = float(match.group(2))
    if not rates:
        raise RuntimeError(f"redis-benchmark printed no rate: {done.stdout[-300:]}"
                           f"{done.stderr[-300:]}")
    return rates


def bench_redis(repeat: int, requests: int) -> dict[str, dict[str, list[float]]]:
    missing = [p for p in ("redis-server", "redis-benchmark") if not shutil.which(p)]
    if missing:
        print(f"skipping redis: {', '.join(missing)} not installed")
        return {}
    servers = {
        "redis_lite": lambda p: [sys.executable, str(ROOT / "examples" / "redis_lite.py"),
                                 "--port", str(p)],
        "redis-server": lambda p: ["redis-server", "--port", str(p), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no"],
    }
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(repeat):
        for name, argv in servers.items():
            port = free_port()
            proc = start(argv(port), port)
            try:
                rates = redis_benchmark(port, requests)
            finally:
                stop(proc)
            for test, rate in rates.items():
                results.setdefault(name, {}).setdefault(test, []).append(rate)
            print(f"redis {name}: {rates}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per peer (medians)")
    parser.add_argument("--bytes", type=int, default=200_000_000, help="bulk bytes per run")
    parser.add_argument("--requests", type=int, default=500_000,
                        help="redis-benchmark requests per test")
    args = parser.parse_args()
    bulk = bench_proxies(args.repeat, args.bytes)
    redis = bench_redis(args.repeat, args.requests)
    base = statistics.median(bulk["gevent_pump"])
    print(f"\n| proxy | bulk MB/s (median of {args.repeat}) | ratio to gevent pump |")
    print("|---|---|---|")
    for name, values in bulk.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.0f} | {median / base:.2f}× |")
    if redis:
        print("\n| redis-benchmark -P 16 | redis_lite req/s | redis-server req/s | ratio |")
        print("|---|---|---|---|")
        for test in redis["redis-server"]:
            lite = statistics.median(redis["redis_lite"][test])
            real = statistics.median(redis["redis-server"][test])
            print(f"| {test} | {lite:,.0f} | {real:,.0f} | {lite / real:.2f}× |")


if __name__ == "__main__":
    main()
