"""Scenarios 10 and 11: scale and soak. Short forms here; ``GREENSRV_LONG_FAULTS=1`` for the long.

10. C100K: one server process holds many idle connections (100,000 in the long form, 5,000 in
    the short; fewer when ``RLIMIT_NOFILE`` cannot be raised that far, and the figures say so),
    opened by ``idle_horde.py`` from several 127.0.0.x sources, while 50 request/response clients
    (the C load generator) keep their p99 under 50 ms. Reported: how long accepting all of them
    took and the server's RSS per idle connection.
11. Soak: mixed churn (connect, one line, close), pipelined clients (16 lines in flight), plain
    request/response, and abrupt clients (reset mid-line, half-close with lines queued) at full
    load for 60 s (10 minutes in the long form): the server's RSS stays flat after the first half
    (less than 2 MB growth over the second), no descriptor and no greenlet is left behind once
    the clients are gone, and not one byte is wrong or lost (the load generator checks every
    byte of every echo).
"""

from __future__ import annotations

import json
import resource
import socket
import sys
import time

import gevent
import gevent.event
import gevent.subprocess
import pytest
from faultkit import (
    HERE,
    LONG,
    MB,
    client,
    figure,
    loadgen_result,
    poll,
    read_until_eof,
    reset,
    rss_bytes,
    start_loadgen,
    warm_up,
)

pytestmark = [pytest.mark.faults]

C100K_TARGET = 100_000 if LONG else 5_000
#: Descriptors the server needs besides the idle connections: listener, log, pipes, the 50
#: request/response clients, the hub's own.
FD_MARGIN = 256
#: Connections per source address: under the ~28,000 ephemeral ports of one address.
PER_SOURCE = 20_000
RR_CLIENTS = 50
RR_P99_BUDGET = 0.050
SOAK = 600.0 if LONG else 60.0
SOAK_GROWTH_BUDGET = 2 * MB


def _descriptor_room(wanted: int) -> tuple[int, str]:
    """Connections that fit under RLIMIT_NOFILE (raised if this process may), and why not more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_MARGIN
    if hard < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
            hard = need
        except (ValueError, OSError):
            pass
    if hard >= need:
        return wanted, ""
    return hard - FD_MARGIN, (f"RLIMIT_NOFILE hard limit {hard} (raising it needs "
                              "CAP_SYS_RESOURCE, which this machine does not give)")



@pytest.mark.timeout(600 if LONG else 180)
def test_c100k_idle_connections_with_request_response_clients(server_process, loadgen):
    scenario = f"10 C100K ({'long' if LONG else 'short'} form)"
    n, limited_by = _descriptor_room(C100K_TARGET)
    server = server_process({"app": "echo", "nofile": n + FD_MARGIN})
    warm_up(server.address)
    before = rss_bytes(server.pid)
    sources = n // PER_SOURCE + 2
    horde = gevent.subprocess.Popen(
        [sys.executable, str(HERE / "idle_horde.py"), str(server.port), str(n), str(sources)],
        stdin=gevent.subprocess.PIPE, stdout=gevent.subprocess.PIPE)
    try:
        with gevent.Timeout(300 if LONG else 60, AssertionError("the horde never got ready")):
            ready = json.loads(horde.stdout.readline())
        poll(lambda: server.stats()["live_connections"] >= n, "the server to hold every one")
        held = rss_bytes(server.pid)
        rr = loadgen_result(start_loadgen(loadgen, server.port, "rr", conns=RR_CLIENTS,
                                          duration=10 if LONG else 3, warmup=0.5), timeout=60)
        stats = server.stats()
    finally:
        horde.stdin.close()
        horde.wait(timeout=60)
        horde.stdout.close()
    per_conn = (held - before) / max(ready["established"], 1)
    figure(scenario, "idle connections held", ready["established"], f"target {C100K_TARGET}")
    if limited_by:
        figure(scenario, "limited by", limited_by)
    figure(scenario, "source addresses", sources)
    figure(scenario, "time to accept and echo all (s)", ready["seconds"])
    figure(scenario, "server RSS per idle connection (KB)", per_conn / 1024, "goal <= 10")
    figure(scenario, "rr clients: p50 / p99 (ms)",
           f"{rr['p50_us'] / 1000:.3g} / {rr['p99_us'] / 1000:.3g}",
           f"p99 < {RR_P99_BUDGET * 1000:g}")
    figure(scenario, "rr round trips / byte errors", f"{rr['lines']} / {rr['errors']}", "0 errors")
    assert ready["errors"] == 0, ready["first_error"]
    assert ready["established"] == n
    assert rr["errors"] == 0 and rr["connect_errors"] == 0, rr["error"]
    assert rr["p99_us"] / 1e6 < RR_P99_BUDGET
    assert stats["errors"] == {}, stats["errors"]
    assert per_conn < 16 * 1024, "far above the 10.6 KB per idle connection measured before"
    poll(lambda: server.stats()["live_connections"] == 0, "the server to let them all go",
         timeout=120)


class AbruptClients:
    """Connect-and-reset mid-line and half-closers with lines queued, paced, until stopped."""

    def __init__(self, address) -> None:
        self.address = address
        self.rounds = 0
        self.wrong: list[str] = []
        self._done = gevent.event.Event()
        self._glet = gevent.spawn(self._run)

    def _run(self) -> None:
        while not self._done.is_set():
            sock = client(self.address)
            sock.sendall(b"half a li")
            reset(sock)
            sock = client(self.address)
            sock.sendall(b"".join(b"line %d\n" % i for i in range(20)) + b"last, unterminated")
            sock.shutdown(socket.SHUT_WR)
            data, how = read_until_eof(sock)
            sock.close()
            want = b"".join(b"line %d\r\n" % i for i in range(20)) + b"last, unterminated\r\n"
            if data != want or how != "fin":
                self.wrong.append(f"{how}: {data[-60:]!r}")
            self.rounds += 1
            self._done.wait(0.01)  # pacing: the C clients make the load, these the variety

    def stop(self) -> None:
        self._done.set()
        self._glet.join(timeout=30)


@pytest.mark.timeout(SOAK + 180)
def test_soak_mixed_churn_keeps_memory_flat_and_leaks_nothing(server_process, loadgen):
    scenario = f"11 soak {SOAK:g} s"
    server = server_process({"app": "echo"})
    warm_up(server.address)
    baseline = server.stats()
    loads = {
        "churn": start_loadgen(loadgen, server.port, "churn", conns=16, duration=SOAK, warmup=0),
        "pipelined": start_loadgen(loadgen, server.port, "pipelined", conns=16, depth=16,
                                   duration=SOAK, warmup=0),
        "rr": start_loadgen(loadgen, server.port, "rr", conns=16, duration=SOAK, warmup=0),
    }
    abrupt = AbruptClients(server.address)
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    while time.monotonic() - start < SOAK:
        samples.append((time.monotonic() - start, rss_bytes(server.pid)))
        gevent.sleep(1.0)  # sampling interval
    abrupt.stop()
    results = {name: loadgen_result(proc, timeout=60) for name, proc in loads.items()}
    poll(lambda: server.stats()["live_connections"] == 0, "every client to be gone")
    after = server.stats()
    second_half = [rss for t, rss in samples if t >= SOAK / 2]
    growth = max(second_half) - second_half[0]
    figure(scenario, "RSS at start / half-way / end (MB)",
           f"{samples[0][1] / MB:.1f} / {second_half[0] / MB:.1f} / {samples[-1][1] / MB:.1f}")
    figure(scenario, "RSS growth over the second half (MB)", growth / MB,
           f"< {SOAK_GROWTH_BUDGET / MB:g}")
    for name, result in results.items():
        count = result["conns_per_s"] if name == "churn" else result["lines_per_s"]
        figure(scenario, f"{name}: {'connections' if name == 'churn' else 'lines'}/s, "
               "byte errors", f"{count:.0f}, {result['errors']}", "0 errors")
    figure(scenario, "abrupt rounds / wrong", f"{abrupt.rounds} / {len(abrupt.wrong)}")
    figure(scenario, "descriptors / greenlets before -> after",
           f"{baseline['fds']} -> {after['fds']} / {baseline['greenlets']} -> "
           f"{after['greenlets']}")
    for name, result in results.items():
        assert result["errors"] == 0 and result["connect_errors"] == 0, (name, result["error"])
    assert not abrupt.wrong, abrupt.wrong[:5]
    assert after["errors"] == {}, after["errors"]
    assert after["fds"] <= baseline["fds"]
    assert after["greenlets"] <= baseline["greenlets"]
    assert growth < SOAK_GROWTH_BUDGET
