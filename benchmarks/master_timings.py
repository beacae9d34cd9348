"""How long the master takes to act: from SIGHUP to "reload done", and from a worker's SIGKILL
to its replacement accepting, for a given number of workers.

``python benchmarks/master_timings.py --workers 2 8 --repeat 5`` starts ``python -m greensrv``
on a small line application for each worker count, then times ``--repeat`` reloads and
``--repeat`` crashes, one after the other, and prints the median and the worst of each
(crashes are spaced past the master's STABLE_UPTIME, so no replacement waits out the crash
backoff: about a minute per worker count). Times are taken in this process: from just before
``kill()`` to the moment the master's log line arrives on its stderr pipe, so they include the
log's trip. Wall-clock figures on a shared machine: compare runs made side by side, not across
machines.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

APP = '''\
import os


def handler(conn):
    for line in conn:
        conn.put(f"{os.getpid()} {line}")
'''
DEADLINE = 60.0
STABLE_UPTIME = 10.0  # greensrv.workers.STABLE_UPTIME


class Master:
    """A ``greensrv`` master whose stderr lines arrive with the time they were read."""

    def __init__(self, directory: Path, workers: int) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), str(directory)]), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "greensrv", "app:handler", "-b", "127.0.0.1:0", "-w",
             str(workers)], cwd=directory, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.lines.append((time.monotonic(), line.rstrip("\n")))
                self.changed.notify_all()

    def mark(self) -> int:
        with self.changed:
            return len(self.lines)

    def wait(self, pattern: str, after: int) -> tuple[float, re.Match[str]]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + DEADLINE
        with self.changed:
            while True:
                for when, line in self.lines[after:]:
                    match = regex.search(line)
                    if match:
                        return when, match
                after = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"no {pattern!r} within {DEADLINE} s")
                self.changed.wait(left)

    def workers(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(pid) for pid in children.split()]

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=DEADLINE)


def measure(workers: int, repeat: int) -> tuple[list[float], list[float]]:
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "app.py").write_text(APP)
        master = Master(Path(directory), workers)
        try:
            master.wait(r"master \d+ ready", 0)
            reloads, crashes = [], []
            for _ in range(repeat):
                mark = master.mark()
                began = time.monotonic()
                master.proc.send_signal(signal.SIGHUP)
                done, _ = master.wait(r"reload done", mark)
                reloads.append(done - began)
                master.wait(r"stopped in", mark)  # the old workers are gone
            time.sleep(STABLE_UPTIME + 0.5)
            for _ in range(repeat):
                while len(master.workers()) != workers:  # a reload's old workers still exiting
                    time.sleep(0.05)
                mark = master.mark()
                victim = master.workers()[0]
                began = time.monotonic()
                os.kill(victim, signal.SIGKILL)
                master.wait(rf"worker {victim} was killed by SIGKILL; replacing", mark)
                new = master.wait(r"forked worker (\d+)", mark)[1].group(1)
                accepting, _ = master.wait(rf"worker {new} accepting", mark)
                crashes.append(accepting - began)
                # The next victim must have lived STABLE_UPTIME, or its replacement would wait
                # out the crash backoff (workers dying young), which is not what is measured.
                time.sleep(STABLE_UPTIME + 0.5)
        finally:
            master.stop()
    return reloads, crashes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'workers':>7}  {'HUP to reload done (ms)':>26}  {'crash to accepting (ms)':>26}")
    for workers in args.workers:
        reloads, crashes = measure(workers, args.repeat)
        print(f"{workers:>7}  {_summary(reloads):>26}  {_summary(crashes):>26}")


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:.0f}, worst {max(values) * 1000:.0f}"


if __name__ == "__main__":
    main()
