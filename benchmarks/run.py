"""greensrv's benchmark: every peer line-echo server driven by one C load generator, side by side.

``python benchmarks/run.py`` builds ``benchmarks/build/loadgen`` and ``c_echo`` with the system
``cc``, then for each scenario runs every server ``--repeat`` times, interleaved (A B C A B C ...),
each run in a fresh server process pinned to CPU 0 while the load generator runs on CPU 1. It
prints one table of medians with ratios to the hand-written gevent loop (``gevent_loop``), and
writes the raw runs to ``benchmarks/results/``.

``--smoke`` (the ``bench-smoke`` tox env, run by CI) checks correctness only: every server, every
scenario, about a second each, small idle and bulk sizes; it exits non-zero unless every run
answered with zero byte errors. A server whose runtime is missing (a Python module, Perl's POE) is
skipped with the reason printed; everything else that fails is a failure. Without a C compiler
the smoke run as a whole is skipped (exit status 0, reason printed). Under
``GREENSRV_REQUIRE_PEERS=1`` (set by ``.ci/run``) nothing is skipped: a missing compiler or
runtime fails the run.

See ``docs/benchmarks.md`` for the method and the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import random
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: Set by ``.ci/run``: a missing compiler or peer runtime fails the smoke run instead of skipping.
REQUIRE_PEERS = os.environ.get("GREENSRV_REQUIRE_PEERS") == "1"
ROOT = HERE.parent
PEERS = HERE / "peers"
BUILD = HERE / "build"
RESULTS = HERE / "results"
HOST = "127.0.0.1"  # loopback only, always

SERVER_CPU = 0  #: the CPU the server under test is pinned to
LOADGEN_CPU = 1  #: the CPU the load generator (and this script, mostly asleep) run on
#: ratios are to the hand-written gevent loop, the floor greensrv must reach
BASELINE = "gevent_loop"
START_TIMEOUT = 20.0  #: seconds a server may take to listen (Twisted's import is the slowest)
STOP_GRACE = 5.0  #: seconds between SIGTERM and SIGKILL when a server is stopped
IDLE_SETTLE = 0.5  #: seconds the idle connections sit before the server's RSS is read


@dataclass
class Peer:
    name: str
    label: str
    argv: list[str]  # {port} is substituted; --bulk is appended for the bulk scenario
    python_modules: tuple[str, ...] = ()
    perl_modules: tuple[str, ...] = ()
    compiled: str | None = None  # a C source under peers/, built into build/


PY = sys.executable


def _py(script: str, *extra: str) -> list[str]:
    return [PY, str(PEERS / script), "{port}", *extra]


PEER_LIST = [
    Peer("c_echo", "C epoll echo (ceiling)", [str(BUILD / "c_echo"), "{port}"],
         compiled="c_echo.c"),
    Peer("gevent_loop", "gevent hand loop (recv/split/sendall)", _py("gevent_loop.py"),
         ("gevent",)),
    Peer("gevent_floor", "gevent floor of greensrv's handler shape", _py("gevent_floor.py"),
         ("gevent",)),
    Peer("gevent_makefile", "gevent makefile().readline()", _py("gevent_makefile.py"),
         ("gevent",)),
    Peer("asyncio_streams", "asyncio streams", _py("asyncio_streams.py")),
    Peer("asyncio_streams_uvloop", "asyncio streams + uvloop",
         _py("asyncio_streams.py", "--uvloop"), ("uvloop",)),
    Peer("asyncio_protocol", "asyncio Protocol", _py("asyncio_protocol.py")),
    Peer("asyncio_protocol_uvloop", "asyncio Protocol + uvloop",
         _py("asyncio_protocol.py", "--uvloop"), ("uvloop",)),
    Peer("twisted", "Twisted LineOnlyReceiver", _py("twisted_echo.py"), ("twisted",)),
    Peer("socketserver", "socketserver.ThreadingTCPServer", _py("socketserver_echo.py")),
    Peer("poe", "POE::Component::Server::TCP", ["perl", str(PEERS / "poe_echo.pl"), "{port}"],
         perl_modules=("POE",)),
    Peer("greensrv_handler", "greensrv handler", _py("greensrv_handler.py"), ("greensrv",)),
    Peer("greensrv_callback", "greensrv client_input", _py("greensrv_callback.py"),
         ("greensrv",)),
    Peer("greensrv_callback_greenlet_free", "greensrv client_input, idle_greenlets=False",
         _py("greensrv_callback.py", "--no-idle-greenlets"), ("greensrv",)),
    Peer("greensrv_handler_admin", "greensrv handler, admin endpoint on",
         _py("greensrv_handler.py", "--admin"), ("greensrv",)),
    Peer("greensrv_handler_ops", "greensrv handler, admin endpoint and connection log on",
         _py("greensrv_handler.py", "--admin", "--access-log"), ("greensrv",)),
]
PEERS_BY_NAME = {p.name: p for p in PEER_LIST}


@dataclass
class Scenario:
    name: str
    metric: str  # key in the load generator's JSON (idle: computed here)
    unit: str
    higher_is_better: bool = True


SCENARIOS = {
    "rr": Scenario("rr", "lines_per_s", "lines/s"),
    "pipelined": Scenario("pipelined", "lines_per_s", "lines/s"),
    "churn": Scenario("churn", "conns_per_s", "conns/s"),
    "idle": Scenario("idle", "kb_per_conn", "KB/conn", higher_is_better=False),
    "bulk": Scenario("bulk", "mb_per_s", "MB/s"),
}


@dataclass
class Config:
    duration: float
    warmup: float
    repeat: int
    idle_repeat: int
    idle_conns: int
    bulk_bytes: int
    pin: bool
    smoke: bool
    verbose: bool


@dataclass
class Run:
    server: str
    scenario: str
    rep: int
    ok: bool
    value: float | None = None
    result: dict = field(default_factory=dict)
    error: str | None = None


# ---- building and environment ---------------------------------------------------------------

def build() -> Path:
    """Compile the load generator and the C echo peer into build/ (only when a source is newer)."""
    cc = shutil.which("cc")
    if cc is None:
        raise SystemExit("benchmarks: no C compiler: `cc` is not on PATH (apt-get install gcc)")
    BUILD.mkdir(parents=True, exist_ok=True)
    targets = ((HERE / "loadgen.c", BUILD / "loadgen"), (PEERS / "c_echo.c", BUILD / "c_echo"))
    for src, out in targets:
        if out.exists() and out.stat().st_mtime >= src.stat().st_mtime:
            continue
        cmd = [cc, "-O2", "-Wall", "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"benchmarks: building {src.name} failed:\n{proc.stderr}")
    return BUILD / "loadgen"


def missing_runtime(peer: Peer) -> str | None:
    """Why this peer cannot run here, or None."""
    for mod in peer.python_modules:
        if importlib.util.find_spec(mod) is None:
            return f"Python module {mod!r} is not installed"
    for mod in peer.perl_modules:
        if shutil.which("perl") is None:
            return "perl is not installed"
        ok = subprocess.run(["perl", f"-M{mod}", "-e1"], capture_output=True).returncode == 0
        if not ok:
            return f"Perl module {mod} is not installed (Debian: libpoe-perl)"
    return None


def haproxy_run_options(name: str, description: str, pin: bool) -> tuple[argparse.Namespace,
                                                                           Config]:
    """The command line of a timed benchmark through HAProxy (proxy_churn.py, fleet.py):
    ``--duration``, ``--warmup``, ``--repeat``; exits naming the package when haproxy is
    missing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("haproxy") is None:
        raise SystemExit(f"{name}: needs haproxy (apt-get install haproxy)")
    return args, Config(duration=args.duration, warmup=args.warmup, repeat=args.repeat,
                        idle_repeat=0, idle_conns=0, bulk_bytes=0, pin=pin, smoke=False,
                        verbose=False)


def can_pin() -> bool:
    return (shutil.which("taskset") is not None and hasattr(os, "sched_getaffinity")
            and {SERVER_CPU, LOADGEN_CPU} <= os.sched_getaffinity(0))


def pinned(argv: list[str], cpu: int, cfg: Config) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cfg.pin else argv


def raise_nofile() -> None:
    """In the child before exec: the soft RLIMIT_NOFILE up to the hard one (idle needs 10,000+)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    """A port that binds now, below the ephemeral range: the load generator's own outgoing
    connections (tens of thousands in churn) can then never be holding it."""
    low = 32768
    with contextlib.suppress(OSError, ValueError), open(
            "/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(100):
        port = random.randrange(min(20000, low // 2), low)
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a master's workers), from /proc's children lists."""
    tree, i = [pid], 0
    while i < len(tree):
        with contextlib.suppress(OSError), open(f"/proc/{tree[i]}/task/{tree[i]}/children") as f:
            tree.extend(int(child) for child in f.read().split())
        i += 1
    return tree


def rss_kb(pid: int) -> int:
    """Resident memory of the server: of every process in its tree (master and workers)."""
    total = 0
    for member in process_tree(pid):
        with open(f"/proc/{member}/status") as f:
            total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
    return total


def cpu_seconds(pid: int) -> float:
    """CPU time of the server's whole process tree (a worker alive through the run counts)."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError), open(f"/proc/{member}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> float:
    """CPU seconds all CPUs have spent busy since boot (steal included), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    guest = sum(fields[8:10]) if len(fields) > 9 else 0  # already counted in user/nice
    return (sum(fields) - idle - guest) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# ---- one server process -----------------------------------------------------------------------

class ServerProcess:
    """A peer started on a free port, waited for until it accepts, and stopped by its PID."""

    def __init__(self, peer: Peer, bulk: bool, cfg: Config):
        self.peer = peer
        self.port = free_port()
        argv = [a.replace("{port}", str(self.port)) for a in peer.argv]
        if bulk:
            argv.append("--bulk")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        # the server's output, shown if it fails; closed in stop()
        self.log = tempfile.TemporaryFile(mode="w+b")  # noqa: SIM115
        self.proc = subprocess.Popen(pinned(argv, SERVER_CPU, cfg), stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     preexec_fn=raise_nofile, start_new_session=True)
        self.pid = self.proc.pid  # taskset execs the server: same PID

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with status {self.proc.returncode} before listening"
                                   f"{self.log_tail()}")
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"not listening on port {self.port} after {START_TIMEOUT:.0f} s")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with status {self.proc.returncode}"
                               f"{self.log_tail()}")

    def log_tail(self, limit: int = 2000) -> str:
        self.log.seek(0)
        text = self.log.read().decode(errors="replace")[-limit:].strip()
        return f"; its output ends:\n{text}" if text else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# ---- the load generator ---------------------------------------------------------------------

def loadgen_argv(loadgen: Path, scenario: str, port: int, cfg: Config, **extra) -> list[str]:
    argv = [str(loadgen), "--host", HOST, "--port", str(port), "--scenario", scenario]
    for key, value in extra.items():
        argv += ["--" + key.replace("_", "-"), str(value)]
    return pinned(argv, LOADGEN_CPU, cfg)


def parse_result(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise RuntimeError("the load generator printed no result")
    return json.loads(lines[-1])


def run_loadgen(argv: list[str], timeout: float) -> dict:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=raise_nofile)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"load generator failed ({proc.returncode}): {proc.stderr.strip()}")
    result = parse_result(proc.stdout)
    result["returncode"] = proc.returncode
    return result


def measure_timed(server: ServerProcess, loadgen: Path, scenario: str, cfg: Config) -> dict:
    if scenario == "bulk":
        extra = {"bytes": cfg.bulk_bytes, "warmup_bytes": cfg.bulk_bytes // 20,
                 "timeout": 30 if cfg.smoke else 300}
        timeout = extra["timeout"] + 10
    else:
        extra = {"duration": cfg.duration, "warmup": cfg.warmup,
                 "timeout": cfg.duration + cfg.warmup + 30}
        timeout = extra["timeout"] + 20
    cpu0, busy0 = cpu_seconds(server.pid), busy_cpu_seconds()
    result = run_loadgen(loadgen_argv(loadgen, scenario, server.port, cfg, **extra), timeout)
    result["server_cpu_s"] = cpu_seconds(server.pid) - cpu0
    # CPU time that was neither the server's nor the load generator's: other processes on a
    # shared machine, steal, interrupts. High values mean a noisy run.
    result["other_cpu_s"] = max(0.0, busy_cpu_seconds() - busy0 - result["server_cpu_s"]
                                - result.get("loadgen_cpu_s", 0))
    return result


def measure_idle(server: ServerProcess, loadgen: Path, cfg: Config) -> dict:
    """Server RSS growth per idle connection: warm up, read RSS, open N (each echoes one line)
    and hold them, read RSS again after a short settle, then release them."""
    warm = run_loadgen(loadgen_argv(loadgen, "idle", server.port, cfg, conns=200, hold=0,
                                    timeout=60), 90)
    if warm["errors"]:
        return warm
    time.sleep(0.2)
    before = rss_kb(server.pid)
    timeout = 60 if cfg.smoke else 180
    argv = loadgen_argv(loadgen, "idle", server.port, cfg, conns=cfg.idle_conns, timeout=timeout)
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=raise_nofile)
    after = None
    try:
        ready = select.select([proc.stdout], [], [], timeout + 5)[0]
        first = proc.stdout.readline() if ready else ""
        if first.startswith('{"event": "ready"'):
            time.sleep(IDLE_SETTLE)
            server.check_alive()
            after = rss_kb(server.pid)
        out, err = proc.communicate("\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"load generator failed ({proc.returncode}): {err.strip()}")
    result = parse_result(first + out)
    if after is not None and not result["errors"]:
        result["rss_before_kb"] = before
        result["rss_after_kb"] = after
        result["kb_per_conn"] = (after - before) / cfg.idle_conns
    elif not result["errors"]:
        result["errors"] = 1
        result["error"] = "the idle connections never became ready"
    return result


def start_server(peer: Peer, bulk: bool, cfg: Config) -> ServerProcess:
    """Start the peer; if it dies before listening (say its port was taken meanwhile), try twice
    more on other ports, then give up with its output."""
    for attempt in range(3):
        server = ServerProcess(peer, bulk, cfg)
        try:
            server.wait_listening()
            return server
        except RuntimeError:
            server.stop()
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def measure(peer: Peer, scenario: str, rep: int, loadgen: Path, cfg: Config) -> Run:
    try:
        server = start_server(peer, scenario == "bulk", cfg)
    except (RuntimeError, OSError) as exc:
        return Run(peer.name, scenario, rep, False, error=str(exc))
    try:
        if scenario == "idle":
            result = measure_idle(server, loadgen, cfg)
        else:
            result = measure_timed(server, loadgen, scenario, cfg)
        server.check_alive()
    except (RuntimeError, OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return Run(peer.name, scenario, rep, False, error=str(exc))
    finally:
        server.stop()
    metric = SCENARIOS[scenario].metric
    value = result.get(metric)
    if result["errors"]:
        return Run(peer.name, scenario, rep, False, result=result,
                   error=f"{result['errors']} error(s): {result['error']}")
    if value is None or (scenario != "idle" and value <= 0):
        return Run(peer.name, scenario, rep, False, result=result,
                   error=f"no {metric} measured (did the server answer?)")
    return Run(peer.name, scenario, rep, True, value=value, result=result)


# ---- reporting ----------------------------------------------------------------------------------

def fmt_value(value: float, scenario: str) -> str:
    if scenario == "idle":
        return f"{value:.2f}"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e4:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def median_of(runs: list[Run], server: str, scenario: str, key: str | None = None):
    values = [(r.result.get(key) if key else r.value) for r in runs
              if r.server == server and r.scenario == scenario and r.ok]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def table(runs: list[Run], servers: list[Peer], scenarios: list[str]) -> str:
    head = ["server"] + [f"{s} {SCENARIOS[s].unit}" for s in scenarios]
    rows = [head, ["---"] * len(head)]
    for peer in servers:
        row = [peer.label]
        for s in scenarios:
            value = median_of(runs, peer.name, s)
            failed = any(r.server == peer.name and r.scenario == s and not r.ok for r in runs)
            if value is None:
                row.append("FAILED" if failed else "—")
                continue
            cell = fmt_value(value, s)
            base = median_of(runs, BASELINE, s)
            if base and peer.name != BASELINE:
                cell += f" ({value / base:.2f}×)"
            if failed:
                cell += " (some runs failed)"
            row.append(cell)
        rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def latency_table(runs: list[Run], servers: list[Peer], scenarios: list[str]) -> str:
    cols = [s for s in ("rr", "pipelined", "churn") if s in scenarios]
    if not cols:
        return ""
    head = ["server"] + [f"{s} p50 / p99 / p99.9 µs" for s in cols]
    rows = [head, ["---"] * len(head)]
    for peer in servers:
        row = [peer.label]
        for s in cols:
            p = [median_of(runs, peer.name, s, k) for k in ("p50_us", "p99_us", "p999_us")]
            row.append(" / ".join("—" if v is None else f"{v:.0f}" for v in p))
        rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def cpu_table(runs: list[Run], servers: list[Peer], scenarios: list[str]) -> str:
    """Median CPU use of server and load generator per timed run, as % of one core: the load
    generator must stay well below 100% for the figures to be the server's."""
    cols = [s for s in scenarios if s != "idle"]
    head = ["server"] + [f"{s} server / loadgen / others" for s in cols]
    rows = [head, ["---"] * len(head)]
    for peer in servers:
        row = [peer.label]
        for s in cols:
            mine = [r for r in runs if r.server == peer.name and r.scenario == s and r.ok]
            wall = [r.result.get("wall_s") or 0 for r in mine]
            if not mine or not all(wall):
                row.append("—")
                continue
            srv = statistics.median(r.result["server_cpu_s"] / w * 100
                                    for r, w in zip(mine, wall, strict=True))
            gen = statistics.median(r.result["loadgen_cpu_s"] / w * 100
                                    for r, w in zip(mine, wall, strict=True))
            oth = statistics.median(r.result.get("other_cpu_s", 0) / w * 100
                                    for r, w in zip(mine, wall, strict=True))
            row.append(f"{srv:.0f} / {gen:.0f} / {oth:.0f}")
        rows.append(row)
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{platform.node()}: {os.cpu_count()} CPUs ({cpu}), Linux {platform.release()}, "
            f"{platform.python_implementation()} {platform.python_version()}")


def versions() -> str:
    found = []
    for mod in ("gevent", "uvloop", "twisted", "greensrv"):
        if importlib.util.find_spec(mod) is None:
            continue
        try:
            from importlib.metadata import version
            found.append(f"{mod} {version(mod)}")
        except Exception:
            found.append(mod)
    return ", ".join(found)


# ---- main --------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="all",
                    help="comma-separated server names (see --list), default all")
    ap.add_argument("--scenarios", default="all",
                    help="comma-separated: " + ",".join(SCENARIOS) + " (default all)")
    ap.add_argument("--duration", type=float, default=None,
                    help="measured seconds per timed run (default 2, smoke 1)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="warm-up seconds before each timed run (default 0.5, smoke 0.2)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="interleaved repetitions per server and scenario (default 3, smoke 1)")
    ap.add_argument("--idle-repeat", type=int, default=None,
                    help="repetitions of idle (default: --repeat; POE's select loop alone takes"
                         " ~70 s per 10,000-connection run, so 1 saves minutes)")
    ap.add_argument("--idle-conns", type=int, default=None,
                    help="idle connections (default 10000, smoke 500)")
    ap.add_argument("--bulk-bytes", type=int, default=None,
                    help="bytes echoed in bulk (default 1e9, smoke 2e7)")
    ap.add_argument("--smoke", action="store_true",
                    help="correctness only: every server, every scenario, about 1 s each")
    ap.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    ap.add_argument("--workers", default=None, metavar="N[,N...]",
                    help="also run greensrv's handler peer as a master with N workers, for each"
                         " N (as server greensrv_handler_wN); implies --no-pin, since workers"
                         " need every CPU")
    ap.add_argument("--max-accept", type=int, default=None,
                    help="with --workers: clients a worker accepts per wake-up (default: "
                         "greensrv's own)")
    ap.add_argument("--list", action="store_true", help="list the servers and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every run's JSON")
    return ap.parse_args(argv)


def select_names(spec: str, known: list[str], what: str) -> list[str]:
    if spec == "all":
        return list(known)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def add_worker_peers(spec: str, max_accept: int | None) -> list[str]:
    """A ``greensrv_handler_wN`` peer for each N in ``spec``; their names."""
    names = []
    for n in (int(x) for x in spec.split(",") if x.strip()):
        extra = ("--workers", str(n)) + (("--max-accept", str(max_accept)) if max_accept else ())
        label = f"greensrv handler, {n} worker(s)" + (f", max_accept {max_accept}"
                                                     if max_accept else "")
        peer = Peer(f"greensrv_handler_w{n}", label, _py("greensrv_handler.py", *extra),
                    ("greensrv",))
        PEER_LIST.append(peer)
        PEERS_BY_NAME[peer.name] = peer
        names.append(peer.name)
    return names


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    worker_peers = add_worker_peers(args.workers, args.max_accept) if args.workers else []
    if args.list:
        for p in PEER_LIST:
            print(f"{p.name:26} {p.label}")
        return 0
    smoke = args.smoke
    cfg = Config(
        duration=args.duration if args.duration is not None else (1.0 if smoke else 2.0),
        warmup=args.warmup if args.warmup is not None else (0.2 if smoke else 0.5),
        repeat=args.repeat if args.repeat is not None else (1 if smoke else 3),
        idle_repeat=0,
        idle_conns=args.idle_conns if args.idle_conns is not None else (500 if smoke else 10000),
        bulk_bytes=args.bulk_bytes if args.bulk_bytes is not None
        else (20_000_000 if smoke else 1_000_000_000),
        pin=not args.no_pin and not worker_peers and can_pin(),
        smoke=smoke,
        verbose=args.verbose,
    )
    cfg.idle_repeat = args.idle_repeat if args.idle_repeat is not None else cfg.repeat
    names = select_names(args.servers, list(PEERS_BY_NAME), "servers")
    names += [n for n in worker_peers if n not in names]
    scenarios = select_names(args.scenarios, list(SCENARIOS), "scenarios")
    if smoke and shutil.which("cc") is None and not REQUIRE_PEERS:
        print("SKIP the benchmark smoke run: needs a C compiler, `cc` (apt-get install gcc "
              "libc6-dev)")
        return 0
    loadgen = build()
    raise_nofile()

    print(f"# {machine()}")
    print(f"# {versions()}; load average at start {loadavg()}")
    if not cfg.pin:
        print("# not pinned: taskset or CPUs 0 and 1 unavailable (or --no-pin)")
    servers: list[Peer] = []
    skipped: list[str] = []
    for name in names:
        peer = PEERS_BY_NAME[name]
        reason = missing_runtime(peer)
        if reason:
            print(f"SKIP {name}: {reason}")
            skipped.append(name)
        else:
            servers.append(peer)

    runs: list[Run] = []
    t_start = time.monotonic()
    for scenario in scenarios:
        for rep in range(cfg.idle_repeat if scenario == "idle" else cfg.repeat):
            for peer in servers:
                t = time.monotonic()
                run = measure(peer, scenario, rep, loadgen, cfg)
                runs.append(run)
                took = time.monotonic() - t
                status = (f"{fmt_value(run.value, scenario)} {SCENARIOS[scenario].unit}"
                          if run.ok else f"FAILED: {run.error}")
                print(f"  {scenario:9} #{rep + 1} {peer.name:24} {status}  [{took:.1f} s]",
                      flush=True)
                if cfg.verbose and run.result:
                    print("    " + json.dumps(run.result))

    elapsed = time.monotonic() - t_start
    print(f"\n# {len(runs)} runs in {elapsed:.0f} s; load average at end {loadavg()}")
    reps = f"{cfg.repeat}" + (f" (idle {cfg.idle_repeat})" if cfg.idle_repeat != cfg.repeat
                              and "idle" in scenarios else "")
    print(f"# medians of {reps} interleaved run(s); ratios to {BASELINE};"
          f" {cfg.duration:g} s measured after {cfg.warmup:g} s warm-up;"
          f" idle {cfg.idle_conns} conns; bulk {cfg.bulk_bytes / 1e6:g} MB\n")
    print(table(runs, servers, scenarios))
    lat = latency_table(runs, servers, scenarios)
    if lat:
        print("\nlatency (medians of the runs' percentiles)\n")
        print(lat)
    if any(s != "idle" for s in scenarios):
        print("\nCPU use during the load generator's run, % of one core (medians; 'others' is"
              " every other process on the machine, steal and interrupts)\n")
        print(cpu_table(runs, servers, scenarios))

    failures = [r for r in runs if not r.ok]
    if not smoke:
        RESULTS.mkdir(exist_ok=True)
        out = RESULTS / time.strftime("run-%Y%m%d-%H%M%S.json")
        out.write_text(json.dumps({"machine": machine(), "versions": versions(),
                                   "config": cfg.__dict__, "skipped": skipped,
                                   "runs": [r.__dict__ for r in runs]}, indent=1))
        print(f"\n# raw runs: {out.relative_to(ROOT)}")
    if skipped and REQUIRE_PEERS:
        print(f"\nGREENSRV_REQUIRE_PEERS=1 forbids skipping: {', '.join(skipped)}")
        return 1
    if failures:
        print(f"\n{len(failures)} run(s) FAILED:")
        for r in failures:
            print(f"  {r.server} {r.scenario} #{r.rep + 1}: {r.error}")
        return 1
    if smoke:
        print(f"\nsmoke OK: {len(servers)} servers x {len(scenarios)} scenarios answered with zero"
              f" byte errors" + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
