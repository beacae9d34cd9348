"""Instructions per request, per line and per connection: the benchmark's noise-free companion.

``python benchmarks/instructions.py [--servers a,b] [--scenarios rr,pipelined,churn]`` runs each
server under ``valgrind --tool=callgrind``, which counts the user-space instructions the server
executes (not seconds): the same code under the same load gives the same count, however busy the
machine is, so differences of a few per cent that the timed runs cannot see on a shared VM show
up here. The count leaves out the kernel (system calls cost the same for every server that makes
the same calls), so read it as "how much work the server's own code does", next to the timed
ratios of ``run.py``.

Each server is measured twice, under a small and a large load from a plain Python client in this
process; the difference, divided by the difference in work, cancels the interpreter's start-up:

- ``rr``: 50 connections, one 64-byte line in flight on each: instructions per echoed line;
- ``pipelined``: one connection, 64 lines in flight: instructions per echoed line;
- ``churn``: connect, one line, read its echo, close, one after another: per connection.

``--syscalls`` counts system calls the same way instead (``strace -f -c``, Debian ``strace``):
the small and large loads' totals, their difference divided by the difference in work, so
"system calls per connection" in churn is the server's own, start-up cancelled.

Every echo is checked byte for byte. Needs valgrind (Debian ``valgrind``), or strace for
``--syscalls``: without it the tool exits with status 2, or, given ``--skip-without-valgrind``
(the ``bench-smoke`` tox env),
says so and exits 0, unless ``GREENSRV_REQUIRE_PEERS=1`` (set by ``.ci/run``). The servers are
the peers of ``run.py``. About 25 s per server and scenario here.
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import run  # benchmarks/run.py: the peers and their command lines

HOST = run.HOST
LINE_SIZE = 64
#: the small and large loads of each scenario (in its unit); their difference is what is counted
LOADS = {"rr": (2_000, 12_000), "pipelined": (300 * 64, 1_300 * 64), "churn": (200, 1_200)}
UNITS = {"rr": "line", "pipelined": "line", "churn": "connection"}
RR_CONNECTIONS = 50
START_TIMEOUT = 120.0  #: seconds a server may take to listen under valgrind (about 50x slower)
CLIENT_TIMEOUT = 60.0  #: seconds one reply may take under valgrind


def line(n: int) -> bytes:
    return b"%062d\r\n" % n


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        data = sock.recv(size - got)
        if not data:
            raise ConnectionError(f"the server closed after {got} of {size} bytes")
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def drive_rr(port: int, total: int) -> None:
    """RR_CONNECTIONS connections, one line in flight on each, until ``total`` lines echoed."""
    sel = selectors.DefaultSelector()
    sent: dict[socket.socket, int] = {}  # the number of the line in flight on each connection
    for _ in range(min(RR_CONNECTIONS, total)):
        sock = socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(line(0))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ, bytearray())
        sent[sock] = 0
    started = in_flight = len(sent)
    while in_flight:
        events = sel.select(CLIENT_TIMEOUT)
        if not events:
            raise TimeoutError("no echo within the timeout")
        for key, _ in events:
            sock, buf = key.fileobj, key.data
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed a connection")
            buf += data
            while len(buf) >= LINE_SIZE:
                if bytes(buf[:LINE_SIZE]) != line(sent[sock]):
                    raise ValueError(f"wrong echo {bytes(buf[:LINE_SIZE])!r}")
                del buf[:LINE_SIZE]
                in_flight -= 1
                if started < total:
                    sent[sock] += 1
                    # the only line on this connection, into an empty send buffer: never partial
                    if sock.send(line(sent[sock])) != LINE_SIZE:
                        raise ConnectionError("a 64-byte line was not sent whole")
                    started += 1
                    in_flight += 1
    for sock in sent:
        sock.close()


def drive_pipelined(port: int, total: int) -> None:
    """One connection; batches of 64 lines, each sent once the previous one is echoed."""
    batch = b"".join(line(n) for n in range(64))
    with socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT) as sock:
        for _ in range(total // 64):
            sock.sendall(batch)
            if recv_exactly(sock, len(batch)) != batch:
                raise ValueError("wrong echo of a pipelined batch")


def drive_churn(port: int, total: int) -> None:
    for n in range(total):
        with socket.create_connection((HOST, port), timeout=CLIENT_TIMEOUT) as sock:
            sock.sendall(line(n))
            if recv_exactly(sock, LINE_SIZE) != line(n):
                raise ValueError("wrong echo in churn")


DRIVERS = {"rr": drive_rr, "pipelined": drive_pipelined, "churn": drive_churn}


#: How each kind of count runs a server, and where its total is read: the command's prefix (with
#: ``{out}`` for a file it writes) and the pattern of the total in its stderr or that file.
COUNTERS = {
    "instructions": (["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"],
                     r"Collected : (\d+)", "valgrind"),
    # -f: every thread (gevent's resolver and thread pool would hide calls otherwise)
    "syscalls": (["strace", "-f", "-c", "-o", "{out}"],
                 r"(?m)^\s*100\.00\s+\S+\s+\S+\s+(\d+)\s+(?:\d+\s+)?total$",
                 "strace"),
}


def instructions(peer: run.Peer, scenario: str, load: int, counter: str = "instructions") -> int:
    """Start the peer under callgrind (or strace: ``counter="syscalls"``), drive ``load``
    units of work, stop it, return its count."""
    prefix, pattern, tool = COUNTERS[counter]
    port = run.free_port()
    argv = [a.replace("{port}", str(port)) for a in peer.argv]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(run.ROOT), env.get("PYTHONPATH")]))
    # Both loads must pay the same start-up: a first run that compiles and writes the bytecode
    # the second one only loads would put the compiler's work into the difference.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    with tempfile.TemporaryFile(mode="w+") as log, tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "count")
        server = subprocess.Popen(
            [a.replace("{out}", out) for a in prefix] + argv,
            stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                try:
                    socket.create_connection((HOST, port), timeout=1.0).close()
                    break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"{peer.name} did not start under {tool}") from None
                    time.sleep(0.2)  # poll interval while valgrind starts the interpreter
            DRIVERS[scenario](port, load)
        finally:
            _stop(server, counter)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.seek(0)
        text = log.read()
        if os.path.exists(out):
            with open(out) as written:
                text += written.read()
        found = re.findall(pattern, text)
    if not found:
        raise RuntimeError(f"{tool} gave no count for {peer.name}")
    return int(found[-1])


def _stop(server: subprocess.Popen[bytes], counter: str) -> None:
    """SIGTERM to the server itself: strace, told to stop, would detach and leave it running
    (valgrind runs the server in its own process, so it is signalled directly)."""
    targets = [server.pid]
    if counter == "syscalls":
        try:
            with open(f"/proc/{server.pid}/task/{server.pid}/children") as children:
                targets = [int(pid) for pid in children.read().split()] or targets
        except OSError:
            pass  # strace has exited already
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def _scaled(load: int, scale: float, scenario: str) -> int:
    step = 64 if scenario == "pipelined" else 1  # whole batches
    return max(step, round(load * scale / step) * step)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="gevent_loop,gevent_floor,greensrv_handler,"
                        "greensrv_callback,asyncio_streams")
    parser.add_argument("--scenarios", default="rr,pipelined,churn")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply both loads (0.1: a quick check that the tool runs)")
    parser.add_argument("--syscalls", action="store_true",
                        help="count system calls (strace -f -c) instead of instructions")
    parser.add_argument("--skip-without-valgrind", action="store_true",
                        help="exit 0 with a message when valgrind (or strace) is missing (a "
                             "smoke run), unless GREENSRV_REQUIRE_PEERS=1")
    args = parser.parse_args(argv)
    counter = "syscalls" if args.syscalls else "instructions"
    tool = COUNTERS[counter][2]
    if shutil.which(tool) is None:
        if args.skip_without_valgrind and not run.REQUIRE_PEERS:
            print(f"SKIP {counter} counts: needs {tool} (apt-get install {tool})")
            return 0
        print(f"{tool} is needed (Debian: apt-get install {tool})", file=sys.stderr)
        return 2
    names = run.select_names(args.servers, list(run.PEERS_BY_NAME), "server")
    scenarios = run.select_names(args.scenarios, list(DRIVERS), "scenario")
    rows: dict[str, dict[str, float]] = {}
    unit_word = "system calls" if args.syscalls else "instructions"
    for name in names:
        peer = run.PEERS_BY_NAME[name]
        reason = run.missing_runtime(peer)
        if reason or peer.compiled:
            print(f"# {name} skipped: {reason or 'not a Python server'}", flush=True)
            continue
        for scenario in scenarios:
            small, large = (_scaled(n, args.scale, scenario) for n in LOADS[scenario])
            count = (instructions(peer, scenario, large, counter)
                     - instructions(peer, scenario, small, counter)) / (large - small)
            rows.setdefault(name, {})[scenario] = count
            print(f"  {scenario:9s} {name:24s} {count:9.{1 if args.syscalls else 0}f} "
                  f"{unit_word} per {UNITS[scenario]}", flush=True)
    base = rows.get(run.BASELINE, {})
    header = " | ".join(f"{s} per {UNITS[s]}" for s in scenarios)
    print(f"\n| server | {header} |\n|---|" + "---|" * len(scenarios))
    for name, counts in rows.items():
        cells = []
        for s in scenarios:
            ratio = f" ({counts[s] / base[s]:.2f}×)" if s in base and name != run.BASELINE else ""
            cells.append(f"{counts[s]:.1f}{ratio}" if args.syscalls
                         else f"{counts[s] / 1000:.2f}k{ratio}")
        print(f"| {run.PEERS_BY_NAME[name].label} | {' | '.join(cells)} |")
    what = ("system calls counted by strace -f -c" if args.syscalls
            else "user-space instructions counted by callgrind")
    print(f"\n({what}; lower is better; ratios to {run.BASELINE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
