"""The benchmark's load generator counts a wrong echo as an error, never as a data point.

Builds ``benchmarks/build/loadgen`` (skipped without a C compiler) and drives small threaded echo
servers that are right, or wrong in one way each: a changed byte, a lost line, two lines swapped,
an early close, an extra byte. The whole benchmark smoke run is ``tox -e bench-smoke``.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import need_program

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


@pytest.fixture(scope="module")
def loadgen():
    need_program("cc", "gcc")
    import run  # benchmarks/run.py

    return run.build()


def serve(transform, stop_after=None):
    """A thread-per-client echo server on 127.0.0.1 that passes each client's byte stream through
    ``transform(data, state) -> bytes`` (``state`` a per-client dict); returns (port, closer)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)

    def client(sock):
        state = {"seen": 0, "buf": b""}
        with sock:
            while True:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                out = transform(data, state)
                state["seen"] += len(data)
                try:
                    sock.sendall(out)
                except OSError:
                    return
                if stop_after is not None and state["seen"] >= stop_after:
                    return

    def accept():
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=client, args=(sock,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return listener.getsockname()[1], listener.close


def drive(loadgen, port, scenario, *extra):
    argv = [str(loadgen), "--port", str(port), "--scenario", scenario, *extra]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return proc.returncode, json.loads(proc.stdout.splitlines()[-1])


def lines_through(fn):
    """A transform that hands complete lines (with their \\r\\n) to fn(lines, state)."""

    def transform(data, state):
        parts = (state["buf"] + data).split(b"\r\n")
        state["buf"] = parts.pop()
        return b"".join(fn([p + b"\r\n" for p in parts], state))

    return transform


@pytest.mark.parametrize("scenario", ["rr", "pipelined", "churn"])
def test_a_correct_echo_has_no_errors(loadgen, scenario):
    port, close = serve(lambda data, state: data)
    try:
        rc, result = drive(loadgen, port, scenario, "--conns", "4", "--duration", "0.3",
                           "--warmup", "0.1")
    finally:
        close()
    assert rc == 0, result
    assert result["errors"] == 0 and result["lines"] > 0


def test_a_correct_bulk_echo_has_no_errors(loadgen):
    port, close = serve(lambda data, state: data)
    try:
        rc, result = drive(loadgen, port, "bulk", "--conns", "3", "--bytes", "3000000")
    finally:
        close()
    assert rc == 0, result
    assert result["verified_bytes"] == 3000000


def corrupt_one_byte(data, state):
    if state["seen"] <= 1000 < state["seen"] + len(data):
        i = 1000 - state["seen"]
        data = data[:i] + bytes([data[i] ^ 1]) + data[i + 1:]
    return data


def lose_line_20(lines, state):
    state["n"] = state.get("n", 0) + len(lines)
    if state["n"] - len(lines) <= 20 < state["n"]:
        del lines[20 - (state["n"] - len(lines))]
    return lines


def swap_after_30(lines, state):
    held = state.pop("held", None)
    out = []
    for line in lines:
        state["n"] = state.get("n", 0) + 1
        if state["n"] == 30:
            held = line
        elif held is not None:
            out += [line, held]
            held = None
        else:
            out.append(line)
    if held is not None:
        state["held"] = held
    return out


def extra_byte(data, state):
    return data + b"x" if state["seen"] == 0 else data


@pytest.mark.parametrize(
    ("transform", "scenario", "message"),
    [
        (corrupt_one_byte, "pipelined", "byte mismatch"),
        (lines_through(lose_line_20), "pipelined", "byte mismatch"),
        (lines_through(swap_after_30), "pipelined", "byte mismatch"),
        (extra_byte, "rr", "unexpected bytes"),
        (corrupt_one_byte, "bulk", "byte mismatch"),
    ],
    ids=["corrupt", "lose", "reorder", "extra", "bulk-corrupt"],
)
def test_a_wrong_echo_is_an_error(loadgen, transform, scenario, message):
    port, close = serve(transform)
    try:
        rc, result = drive(loadgen, port, scenario, "--conns", "2", "--duration", "0.5",
                           "--warmup", "0", "--bytes", "2000000")
    finally:
        close()
    assert rc == 1
    assert result["errors"] >= 1
    assert message in result["error"]


def test_an_early_close_is_an_error(loadgen):
    port, close = serve(lambda data, state: data, stop_after=64 * 10)
    try:
        rc, result = drive(loadgen, port, "rr", "--conns", "2", "--duration", "0.5",
                           "--warmup", "0")
    finally:
        close()
    assert rc == 1
    # a close with the next line unread is a reset rather than a FIN: an error either way
    assert "closed the connection early" in result["error"] or "reset" in result["error"]
