"""Tools for the fault suite: a server in a subprocess, /proc readings, clients and figures.

Every wait here is bounded by a deadline; polling loops sleep a few milliseconds between looks
(a poll interval, never a synchronisation). Everything runs on loopback.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import gevent
import gevent.queue
import gevent.socket
import gevent.subprocess
import pytest
from helpers import peak_rss_bytes, reset_peak_rss, rss_bytes

import greensrv

HERE = Path(__file__).resolve().parent
#: The directory holding the greensrv package under test, for the subprocesses.
PACKAGE_ROOT = Path(greensrv.__file__).resolve().parent.parent
#: The repository's examples (next to tests/, whether greensrv is installed or not).
EXAMPLES = HERE.parent.parent / "examples"
#: The benchmark's load generator, reused here for efficient, byte-verified client load.
LOADGEN_SOURCE = HERE.parent.parent / "benchmarks" / "loadgen.c"
#: Default bound for one expected event in this suite: far above any loopback round trip.
DEADLINE = 20.0
#: ``GREENSRV_LONG_FAULTS=1`` runs the long forms (C100K at full size, the 10-minute soak);
#: without it the same tests run short forms that keep ``tox -e faults`` within minutes.
LONG = os.environ.get("GREENSRV_LONG_FAULTS") == "1"

_CLK_TCK = os.sysconf("SC_CLK_TCK")

# -- figures --------------------------------------------------------------------------------

#: (scenario, figure, measured, bound) rows printed by the terminal summary hook.
FIGURES: list[tuple[str, str, str, str]] = []


def figure(scenario: str, name: str, value, bound: str = "") -> None:
    """Record one measured figure for the summary table (and print it for ``-s``)."""
    text = f"{value:.3g}" if isinstance(value, float) else str(value)
    FIGURES.append((scenario, name, text, bound))
    print(f"[{scenario}] {name} = {text} {bound}")


# -- /proc ------------------------------------------------------------------------------------


def host_steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests, all CPUs summed (``steal`` in /proc/stat).

    On a shared virtual machine a burst of steal pauses every process here at once, server and
    measuring clients alike, which no server can answer for; a latency test reads this before
    and after its window to tell such a window from a slow server.
    """
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) / _CLK_TCK if len(fields) > 8 else 0.0


def busy_cpu_seconds() -> float:
    """CPU time the whole machine spent busy, all CPUs summed, host steal included.

    Minus the CPU time of the processes a test runs, it is what everything else on a shared
    machine (other users' jobs, the hypervisor) took while the test measured.
    """
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice]: guest is in user
    busy = fields[0] + fields[1] + fields[2] + sum(fields[5:8])
    return busy / _CLK_TCK


class OthersShare:
    """The share of this machine's CPU that others took during a measured window: the host's
    steal, or the busy time beyond that of ``pids``, this process and ``extra_cpu`` (a child's
    own CPU seconds, reported by it), whichever is larger. A latency window that missed its
    budget while others took a tenth or more is measured again rather than failed."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = [*pids, os.getpid()]
        self.wall, self.steal = time.monotonic(), host_steal_seconds()
        self.busy, self.ours = busy_cpu_seconds(), self._our_cpu()

    def _our_cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids)

    def share(self, extra_cpu: float = 0.0) -> float:
        wall = time.monotonic() - self.wall
        steal = host_steal_seconds() - self.steal
        ours = self._our_cpu() - self.ours + extra_cpu
        others = max(busy_cpu_seconds() - self.busy - ours, steal)
        return others / (wall * (os.cpu_count() or 1))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class PeakSampler:
    """Samples a process's RSS every few ms in a greenlet; VmHWM backs it up at the end."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.pid = pid
        self.interval = interval
        reset_peak_rss(pid)
        self.baseline = rss_bytes(pid)
        self.peak = self.baseline
        self._glet = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            self.peak = max(self.peak, rss_bytes(self.pid))
            gevent.sleep(self.interval)

    def growth(self) -> int:
        """Highest RSS seen since the start, minus the RSS at the start."""
        self._glet.kill()
        self.peak = max(self.peak, peak_rss_bytes(self.pid), rss_bytes(self.pid))
        return self.peak - self.baseline


# -- a server in a subprocess -----------------------------------------------------------------


class ServerProcess:
    """``fault_server.py`` (or an example) in a subprocess; its stderr goes to a log file."""

    def __init__(self, log_path: Path, spec: dict | None = None,
                 argv: list[str] | None = None) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in cleanup()
        managed = argv is None
        if managed:
            argv = [sys.executable, str(HERE / "fault_server.py"), json.dumps(spec or {})]
            stdout = gevent.subprocess.PIPE
        else:
            stdout = self._log
        self.proc = gevent.subprocess.Popen(argv, stdin=gevent.subprocess.PIPE, stdout=stdout,
                                            stderr=self._log, env=env)
        self.pid = self.proc.pid
        self._replies: gevent.queue.Queue = gevent.queue.Queue()
        self.port: int | None = None
        self.port2: int | None = None
        self._reader = None
        if managed:
            self._reader = gevent.spawn(self._read_stdout)
            ready = self._reply("ready")
            self.port = ready["port"]
            self.port2 = ready.get("port2")  # the second server's ("also" in the spec), if any

    @property
    def answers_commands(self) -> bool:
        """True for fault_server.py (``stats``, ``stop``); False for a command or an example."""
        return self._reader is not None

    @property
    def address(self) -> tuple[str, int]:
        assert self.port is not None
        return ("127.0.0.1", self.port)

    def _read_stdout(self) -> None:
        for raw in self.proc.stdout:
            self._replies.put(json.loads(raw))
        self._replies.put({"event": "eof"})

    def _reply(self, event: str, timeout: float = DEADLINE) -> dict:
        try:
            message = self._replies.get(timeout=timeout)
        except gevent.queue.Empty:
            pytest.fail(f"server process sent no {event!r} in {timeout} s:\n{self.log()}")
        if message.get("event") != event:
            pytest.fail(f"server process sent {message!r}, expected {event!r}:\n{self.log()}")
        return message

    def stats(self) -> dict:
        self.proc.stdin.write(b"stats\n")
        self.proc.stdin.flush()
        return self._reply("stats")

    def stop(self) -> int:
        """A graceful ``stop()``; the process's exit status once it has ended."""
        self.proc.stdin.write(b"stop\n")
        self.proc.stdin.flush()
        self._reply("stopped")
        return self.proc.wait(timeout=DEADLINE)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def wait_listening(self, port: int) -> None:
        """For an example process: poll connect until it listens."""
        self.port = port
        deadline = time.monotonic() + DEADLINE
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                gevent.socket.create_connection(self.address, timeout=DEADLINE).close()
                return
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    pytest.fail(f"server did not listen within {DEADLINE} s:\n{self.log()}")
                gevent.sleep(0.02)  # poll interval

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._reader is not None:
            self._reader.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self._log.close()


# -- clients ------------------------------------------------------------------------------------


def client(address, *, source: str | None = None, timeout: float = DEADLINE,
           rcvbuf: int | None = None) -> gevent.socket.socket:
    """A connected gevent TCP socket (optionally from another loopback source address)."""
    sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source is not None:
            sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


def reset(sock) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def read_until_eof(sock) -> tuple[bytes, str]:
    """Everything until the peer's close; how it ended: 'fin', 'rst' or 'timeout'."""
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks), "fin"
            chunks.append(data)
    except ConnectionResetError:
        return b"".join(chunks), "rst"
    except TimeoutError:
        return b"".join(chunks), "timeout"


def readline(sock, buf: bytearray) -> bytes:
    """One ``\\r\\n``-terminated line from ``sock``, buffering the rest in ``buf``."""
    while True:
        end = buf.find(b"\r\n")
        if end >= 0:
            line = bytes(buf[:end])
            del buf[:end + 2]
            return line
        data = sock.recv(65536)
        if not data:
            raise EOFError(f"EOF before a line; have {bytes(buf[:100])!r}")
        buf += data


def echo_round_trip(sock, buf: bytearray, payload: bytes) -> float:
    """Send one line, wait for its echo; seconds it took."""
    start = time.perf_counter()
    sock.sendall(payload + b"\n")
    got = readline(sock, buf)
    elapsed = time.perf_counter() - start
    assert got == payload, f"wrong echo: {got[:80]!r} for {payload[:80]!r}"
    return elapsed


def warm_up(address, lines: int = 200) -> None:
    """Echo a few hundred lines first, so a measurement does not count the server's first-use
    allocations (imports, caches, the first greenlets)."""
    sock = client(address)
    buf = bytearray()
    for n in range(lines):
        echo_round_trip(sock, buf, b"warm-up %d" % n)
    sock.close()


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def poll(predicate, what: str, timeout: float = DEADLINE, interval: float = 0.01):
    """Poll ``predicate()`` until truthy or fail after ``timeout`` seconds; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        gevent.sleep(interval)  # poll interval


def start_attack(address, dripping: int, seconds: float, sources: int = 0, pause: float = 1.0,
                 silent: int = 0) -> gevent.subprocess.Popen:
    """``slowloris_attack.py`` against ``address`` in its own process, once every attacker has
    begun: ``dripping`` connections sending a byte a second and ``silent`` ones sending
    nothing, for ``seconds``; read its figures with :func:`attack_result`."""
    proc = gevent.subprocess.Popen(
        [sys.executable, str(HERE / "slowloris_attack.py"), *map(str, address), str(dripping),
         str(seconds), str(sources), str(pause), str(silent)], stdout=gevent.subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"started\n"
    except BaseException:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        raise
    return proc


def attack_result(proc: gevent.subprocess.Popen) -> dict:
    """The attacker's last line (it has ended, or is killed): held, refused, connects, cpu (its
    own CPU time: gevent may already have reaped it, so /proc cannot tell)."""
    try:
        result = json.loads(proc.stdout.readline())
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return dict(result)


MB = 1024 * 1024


# -- the C load generator ----------------------------------------------------------------------


def build_loadgen(directory: Path, cc: str) -> Path:
    """Compile benchmarks/loadgen.c (byte-verifying rr, pipelined and churn clients) into
    ``directory``."""
    out = directory / "loadgen"
    subprocess.run([cc, "-O2", "-o", str(out), str(LOADGEN_SOURCE)], check=True,
                   capture_output=True)
    return out


def start_loadgen(loadgen: Path, port: int, scenario: str, **options) -> gevent.subprocess.Popen:
    """The load generator against 127.0.0.1:port; ``options`` become ``--name value``."""
    argv = [str(loadgen), "--port", str(port), "--scenario", scenario]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return gevent.subprocess.Popen(argv, stdout=gevent.subprocess.PIPE,
                                   stderr=gevent.subprocess.PIPE)


def loadgen_result(proc: gevent.subprocess.Popen, timeout: float) -> dict:
    """Wait for a load generator and return its JSON report (its errors included)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except gevent.subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the load generator did not finish in {timeout} s: {err[-2000:]!r}")
    if not out.strip():
        pytest.fail(f"the load generator exited {proc.returncode} with no report: "
                    f"{err[-2000:]!r}")
    return json.loads(out.splitlines()[-1])
