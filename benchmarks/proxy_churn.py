"""What the PROXY header costs: connection churn through HAProxy, with and without send-proxy-v2.

Each run starts greensrv's echo server (``peers/greensrv_proxy.py``, pinned to CPU 0 like every
server of ``run.py``) and an HAProxy in ``mode tcp`` in front of it (on CPU 1 with the load
generator), then drives HAProxy's port with ``loadgen --scenario churn``: connect, one line,
its echo, close. "plain" forwards without a header; "send-proxy-v2" sends a v2 header on every
connection, and the last mode adds ``proxy-v2-options crc32c,unique-id`` (the configuration of
docs/proxy.md); the server then parses it (``proxy_protocol="v2"``). Runs alternate, plain
first, ``--repeat`` times; the medians and their ratios are printed. The issue's target: the
header costs under 5 %.

Run: ``python benchmarks/proxy_churn.py [--duration 5] [--repeat 3]``; needs haproxy and cc.
"""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from run import (
    HOST,
    LOADGEN_CPU,
    PY,
    Config,
    Peer,
    build,
    can_pin,
    free_port,
    haproxy_run_options,
    measure_timed,
    pinned,
    start_server,
)

HERE = Path(__file__).resolve().parent
HAPROXY_CONFIG = """
global
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 1m
    timeout server 1m
frontend app
    bind {host}:{frontend}
    unique-id-format %{{+X}}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid
    default_backend greensrv
backend greensrv
    server app1 {host}:{server}{options}
"""
MODES = {
    "plain": ([], ""),
    "send-proxy-v2": (["--proxy"], " send-proxy-v2"),
    "send-proxy-v2 crc32c,unique-id": (["--proxy"],
                                       " send-proxy-v2 proxy-v2-options crc32c,unique-id"),
}


def one_run(mode: str, loadgen: Path, cfg: Config) -> dict:
    flags, options = MODES[mode]
    peer = Peer(mode, mode, [PY, str(HERE / "peers" / "greensrv_proxy.py"), "{port}", *flags])
    server = start_server(peer, False, cfg)
    with tempfile.TemporaryDirectory() as tmp:
        frontend = free_port()
        config = Path(tmp) / "haproxy.cfg"
        config.write_text(HAPROXY_CONFIG.format(host=HOST, frontend=frontend,
                                                server=server.port, options=options))
        haproxy = subprocess.Popen(pinned(["haproxy", "-db", "-f", str(config)], LOADGEN_CPU,
                                          cfg), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT)
        try:
            target = SimpleNamespace(port=frontend, pid=server.pid)
            wait_accepting(frontend, haproxy)
            result = measure_timed(target, loadgen, "churn", cfg)  # type: ignore[arg-type]
            server.check_alive()
        finally:
            haproxy.terminate()
            haproxy.wait(10)
            server.stop()
    if result["errors"]:
        raise SystemExit(f"{mode}: {result['errors']} error(s): {result['error']}")
    return result


def wait_accepting(port: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"haproxy exited with status {proc.returncode}")
        try:
            socket.create_connection((HOST, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"haproxy did not listen on {port}")


def main() -> None:
    args, cfg = haproxy_run_options("proxy_churn", __doc__.splitlines()[0], can_pin())
    loadgen = build()
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    costs: dict[str, list[float]] = {mode: [] for mode in MODES}
    for rep in range(args.repeat):
        for mode in MODES:
            result = one_run(mode, loadgen, cfg)
            rate = result["conns_per_s"]
            if not rate:
                raise SystemExit(f"proxy_churn: no connection completed through HAProxy in "
                                 f"the {mode} run: {result}")
            # The server's CPU is read over the whole run, warm-up included: an estimate.
            cost = result["server_cpu_s"] / (rate * (args.duration + args.warmup)) * 1e6
            rates[mode].append(rate)
            costs[mode].append(cost)
            print(f"run {rep + 1} {mode}: {rate:.0f} conns/s, server CPU "
                  f"{result['server_cpu_s']:.2f} s (≈ {cost:.0f} µs/conn), others "
                  f"{result['other_cpu_s']:.2f} s", flush=True)
    plain = statistics.median(rates["plain"])
    print(f"\nmedians through HAProxy ({args.repeat} runs of {args.duration:g} s each, "
          f"pinned: {cfg.pin}):")
    for mode, values in rates.items():
        rate = statistics.median(values)
        print(f"  {mode}: {rate:.0f} conns/s ({(rate / plain - 1) * 100:+.1f} % vs plain), "
              f"server ≈ {statistics.median(costs[mode]):.0f} µs CPU per connection")


if __name__ == "__main__":
    sys.exit(main())
