"""The fleet of docs/fleet.md against one node: rr and churn through HAProxy and direct.

"one node direct": ``greensrv -w 2`` serving an echo handler on 127.0.0.1, the load generator
connected to it. "fleet via HAProxy": three such nodes on 127.0.0.2-4 with ``--proxy-protocol
v2``, ``--agent-bind``, ``--admin-bind``, behind docs/fleet.md's HAProxy configuration (its
addresses and ports replaced), the load generator connected to HAProxy. Runs alternate,
``--repeat`` times; medians are printed.

On one machine the fleet shares the same cores as the single node (and HAProxy and the load
generator take some of them): the comparison shows what the balancer's hop costs, not how a
fleet scales. Nothing is pinned: three masters with two workers each cannot be.

Run: ``python benchmarks/fleet.py [--duration 5] [--repeat 3]``; needs haproxy and cc.
"""

from __future__ import annotations

import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import PY, Config, build, free_port, haproxy_run_options, loadgen_argv, run_loadgen

ROOT = Path(__file__).resolve().parents[1]
DOC = (ROOT / "docs" / "fleet.md").read_text()
HAPROXY_CONFIG = re.search(r"```haproxy\n(.*?)```", DOC, flags=re.S).group(1)
APP = "def handler(conn):\n    for line in conn:\n        conn.put(line)\n"
SCENARIOS = {"rr": "lines_per_s", "churn": "conns_per_s"}


def wait_listening(address: tuple[str, int], procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise SystemExit(f"fleet: a process exited before {address} listened")
        try:
            socket.create_connection(address, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling for a port
    raise SystemExit(f"fleet: nothing listens on {address}")


def node(app_dir: Path, ip: str, port: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "greensrv", "fleetecho:handler", "-w", "2", "-b", f"{ip}:{port}",
         "--app-dir", str(app_dir), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=app_dir)


def haproxy_all_up(stats: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    rows = [line.split(",") for line in data.decode().splitlines()[1:] if line]
    return all(row[17] == "UP" for row in rows if row[1].startswith("node"))


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def measure(port: int, host: str, loadgen: Path, cfg: Config, scenario: str) -> dict:
    argv = loadgen_argv(loadgen, scenario, port, cfg, duration=cfg.duration, warmup=cfg.warmup,
                        timeout=cfg.duration + cfg.warmup + 30)
    argv[argv.index("--host") + 1] = host
    result = run_loadgen(argv, cfg.duration + cfg.warmup + 60)
    if result["errors"]:
        raise SystemExit(f"fleet: {result['errors']} error(s) in {scenario}: {result['error']}")
    return result


def direct(app_dir: Path, loadgen: Path, cfg: Config) -> dict[str, dict]:
    port = free_port()
    procs = [node(app_dir, "127.0.0.1", port)]
    try:
        wait_listening(("127.0.0.1", port), procs)
        return {s: measure(port, "127.0.0.1", loadgen, cfg, s) for s in SCENARIOS}
    finally:
        stop(procs)


def fleet(app_dir: Path, loadgen: Path, cfg: Config) -> dict[str, dict]:
    port, admin, agent, frontend = (free_port() for _ in range(4))
    procs = [node(app_dir, f"127.0.0.{i + 2}", port, "--proxy-protocol", "v2", "--admin-bind",
                  f"127.0.0.{i + 2}:{admin}", "--agent-bind", f"127.0.0.{i + 2}:{agent}")
             for i in range(3)]
    config = (HAPROXY_CONFIG.replace("bind :7000", f"bind 127.0.0.1:{frontend}")
              .replace("/run/haproxy/admin.sock", str(app_dir / "admin.sock"))
              .replace("check port 9100", f"check port {admin}")
              .replace("agent-port 9101", f"agent-port {agent}")
              .replace("inter 1s", "inter 200ms"))
    for i in range(3):
        config = config.replace(f"10.0.0.{i + 1}:7000", f"127.0.0.{i + 2}:{port}")
    (app_dir / "haproxy.cfg").write_text(config.replace("global\n", "global\n    maxconn 8000\n"))
    try:
        for i in range(3):
            wait_listening((f"127.0.0.{i + 2}", port), procs)
        procs.append(subprocess.Popen(["haproxy", "-db", "-f", str(app_dir / "haproxy.cfg")],
                                      stdout=subprocess.DEVNULL))
        wait_listening(("127.0.0.1", frontend), procs)
        deadline = time.monotonic() + 30
        while not haproxy_all_up(app_dir / "admin.sock"):
            if time.monotonic() > deadline:
                raise SystemExit("fleet: HAProxy did not see the three nodes up")
            time.sleep(0.05)  # polling HAProxy's view
        return {s: measure(frontend, "127.0.0.1", loadgen, cfg, s) for s in SCENARIOS}
    finally:
        stop(procs)


def main() -> None:
    args, cfg = haproxy_run_options("fleet", __doc__.splitlines()[0], False)
    loadgen = build()
    runs: dict[str, list[dict[str, dict]]] = {"one node direct": [], "fleet via HAProxy": []}
    with tempfile.TemporaryDirectory() as tmp:
        app_dir = Path(tmp)
        (app_dir / "fleetecho.py").write_text(APP)
        for rep in range(args.repeat):
            for label, run in (("one node direct", direct), ("fleet via HAProxy", fleet)):
                result = run(app_dir, loadgen, cfg)
                runs[label].append(result)
                print(f"run {rep + 1} {label}: " + ", ".join(
                    f"{s} {result[s][key]:.0f}/s p99 {result[s]['p99_us']:.0f} µs"
                    for s, key in SCENARIOS.items()), flush=True)
    print(f"\nmedians of {args.repeat} runs of {args.duration:g} s (2-worker nodes):")
    for label, results in runs.items():
        print(f"  {label}: " + ", ".join(
            f"{s} {statistics.median(r[s][key] for r in results):.0f}/s, p99 "
            f"{statistics.median(r[s]['p99_us'] for r in results):.0f} µs"
            for s, key in SCENARIOS.items()))


if __name__ == "__main__":
    sys.exit(main())
