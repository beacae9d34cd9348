"""Scenario 1: slowloris.

1: 500 connections from 127.0.0.1 each send one byte per second and never finish a line,
reconnecting a second after they are dropped (a persistent attacker, ``slowloris_attack.py``,
in its own process so that its work does not delay the measuring clients); the server runs, in
a subprocess too, with
``concurrency=100``. 20 normal clients, from 127.0.0.2 to 127.0.0.21, each connect, send a line,
await the echo and close, over and over; their round trip is timed from ``connect``.

A window in which the hypervisor or other processes on this machine took a tenth or more of its
CPU time (``steal`` in /proc/stat, and the machine's busy time beyond the server's, the
attacker's and the test's own; either pauses server and clients alike) and that missed the
budget is measured again, in a fresh server, at most three times in all; a miss in a quiet window
fails at once. Every window's figures are reported.

How the 100 ms p99 is met honestly there: ``max_connections_per_ip=50`` keeps the attacker's
address from holding more than half the slots, the rest are refused at accept, and
``record_timeout`` (2 s here so the test is short; the default is 30 s) closes the dripping
connections it does hold.

1b: the harder form, with nothing but ``concurrency=100`` and default settings: 500 attackers
spread over 50 addresses (127.0.1.1-50, so no per-address limit could help), reconnecting the
moment they are closed; 20 good clients each connect, send a line, read its echo and close every
50 ms. Past ``concurrency`` every new client waits in one FIFO backlog behind some 400 attackers,
so the good ones get through quickly only if the server turns its slots over fast: shedding
(on by default with ``concurrency``) closes the connections dripping a record slower than
``record_min_rate`` as soon as the backlog holds anyone, and the backlog drains at the rate the
server can accept, read and close.
"""

from __future__ import annotations

import json
import os
import sys
import time

import gevent
import gevent.event
import gevent.subprocess
import pytest
from faultkit import (
    HERE,
    busy_cpu_seconds,
    client,
    cpu_seconds,
    figure,
    host_steal_seconds,
    percentile,
    readline,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

N_SLOW = 500
N_NORMAL = 20
CONCURRENCY = 100
RECORD_TIMEOUT = 2.0
ATTACK = 6.0  # seconds the attack and the normal clients run
P99_BUDGET = 0.100
#: Windows measured at most, and the share of the machine's CPU time stolen by the host that
#: makes a window that missed the budget count as disturbed rather than failed.
WINDOWS = 3
DISTURBED_STEAL_SHARE = 0.10


def _attack_and_measure(server, sources: int = 0, pause: float = 1.0,
                        pacing: float = 0.1) -> dict:
    over = gevent.event.Event()
    latencies: list[float] = []
    failures: list[str] = []
    peak_live = [0]

    def normal(i: int) -> None:
        source = f"127.0.0.{2 + i}"
        n = 0
        while not over.is_set():
            start = time.perf_counter()
            try:
                sock = client(server.address, source=source, timeout=ATTACK + 10)
                try:
                    sock.sendall(b"normal %d %d\n" % (i, n))
                    got = readline(sock, bytearray())
                finally:
                    sock.close()
            except (OSError, EOFError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            else:
                if got == b"normal %d %d" % (i, n):
                    latencies.append(time.perf_counter() - start)
                else:
                    failures.append(f"wrong echo {got[:60]!r}")
            n += 1
            over.wait(pacing)  # request pacing

    def watch() -> None:
        while not over.is_set():
            peak_live[0] = max(peak_live[0], server.stats()["live_connections"])
            over.wait(0.05)  # sampling interval

    attack = gevent.subprocess.Popen(
        [sys.executable, str(HERE / "slowloris_attack.py"), *map(str, server.address),
         str(N_SLOW), str(1.0 + ATTACK), str(sources), str(pause)],
        stdout=gevent.subprocess.PIPE)
    try:
        assert attack.stdout.readline() == b"started\n"
        watcher = gevent.spawn(watch)
        over.wait(1.0)  # the attackers take their slots first
        normals = [gevent.spawn(normal, i) for i in range(N_NORMAL)]
        over.wait(ATTACK)  # the attack runs
        over.set()
        gevent.joinall(normals, timeout=ATTACK + 20, raise_error=True)
        watcher.kill()
        # Its own CPU time, from its last line: gevent may already have reaped it (no /proc).
        result = json.loads(attack.stdout.readline())
        attacker_cpu = result["cpu"]
        assert attack.wait(timeout=10) == 0
    finally:
        if attack.poll() is None:
            attack.kill()
            attack.wait()
        attack.stdout.close()
    return dict(held=result["held"], refused=result["refused"], connects=result["connects"],
                latencies=latencies, failures=failures, peak_live=peak_live[0],
                attacker_cpu=attacker_cpu, stats=server.stats())


def _measure_in_a_quiet_window(server_process, options: dict, scenario: str,
                               **attack) -> dict:
    """Attack a fresh server; again (up to WINDOWS) while the budget is missed in a window where
    the host's steal or other processes on this machine took a share of its CPU time."""
    for window in range(1, WINDOWS + 1):
        server = server_process({"app": "echo", "options": options})
        wall, steal = time.monotonic(), host_steal_seconds()
        busy, ours = busy_cpu_seconds(), cpu_seconds(server.pid) + cpu_seconds(os.getpid())
        got = _attack_and_measure(server, **attack)
        wall, steal = time.monotonic() - wall, host_steal_seconds() - steal
        ours = cpu_seconds(server.pid) + cpu_seconds(os.getpid()) - ours + got["attacker_cpu"]
        others = max(busy_cpu_seconds() - busy - ours, steal)
        share = others / (wall * (os.cpu_count() or 1))
        got["p99"] = percentile(got["latencies"], 99)
        figure(scenario, f"window {window}: normal p99 (ms) / host steal + others' CPU",
               f"{got['p99'] * 1000:.3g} / {share:.0%}",
               f"< {P99_BUDGET * 1000:g}; a miss while others take >= "
               f"{DISTURBED_STEAL_SHARE:.0%} is measured again")
        if got["p99"] < P99_BUDGET or share < DISTURBED_STEAL_SHARE:
            break
        server.cleanup()
    got["steal_share"] = share
    return got


def test_slowloris_with_a_per_ip_limit_keeps_normal_clients_under_100ms(server_process):
    scenario = "1 slowloris (per-IP limit 50)"
    got = _measure_in_a_quiet_window(server_process, dict(
        concurrency=CONCURRENCY, max_connections_per_ip=50, record_timeout=RECORD_TIMEOUT),
        scenario)
    stats, held, latencies, p99 = got["stats"], got["held"], got["latencies"], got["p99"]
    figure(scenario, "normal round trips", len(latencies))
    figure(scenario, "normal p50 (ms)", percentile(latencies, 50) * 1000)
    figure(scenario, "normal p99 (ms)", p99 * 1000, f"< {P99_BUDGET * 1000:g}")
    figure(scenario, "slow connections closed by record_timeout", stats["closed_record_timeout"])
    figure(scenario, "slow connection lifetime min..max (s)",
           f"{min(held):.2f}..{max(held):.2f}", f"record_timeout {RECORD_TIMEOUT}")
    figure(scenario, "attacker connects refused per IP", stats["refused_per_ip"])
    figure(scenario, "peak live connections", got["peak_live"], f"<= {CONCURRENCY}")
    assert p99 < P99_BUDGET, (f"normal p99 {p99 * 1000:.0f} ms with the host stealing "
                              f"{got['steal_share']:.0%} of the CPU time")
    assert stats["closed_record_timeout"] >= 50
    errors = stats["errors"]
    assert list(errors) == ["RecordTimeoutError"], errors
    assert "record_timeout" in errors["RecordTimeoutError"]["messages"][0]
    assert errors["RecordTimeoutError"]["count"] == stats["closed_record_timeout"]
    assert min(held) >= RECORD_TIMEOUT - 0.1 and max(held) <= RECORD_TIMEOUT + 1.5
    assert stats["refused_per_ip"] > 0
    assert got["peak_live"] <= CONCURRENCY


def test_persistent_slowloris_from_50_addresses_is_shed_at_capacity(server_process):
    """concurrency=100 and defaults only: shedding keeps good clients' p99 under 100 ms."""
    scenario = "1b persistent slowloris, 50 addresses, defaults"
    got = _measure_in_a_quiet_window(server_process, dict(concurrency=CONCURRENCY), scenario,
                                     sources=50, pause=0.0, pacing=0.05)
    stats, latencies, p99 = got["stats"], got["latencies"], got["p99"]
    errors = stats["errors"]
    figure(scenario, "good round trips / failures", f"{len(latencies)} / {len(got['failures'])}",
           "0 failures")
    figure(scenario, "good p50 (ms)", percentile(latencies, 50) * 1000)
    figure(scenario, "good p99 (ms)", p99 * 1000, f"< {P99_BUDGET * 1000:g}")
    figure(scenario, "good max (ms)", max(latencies, default=float("nan")) * 1000)
    figure(scenario, "attacker connects", got["connects"])
    figure(scenario, "connections shed / cut by the record clock",
           f"{stats['closed_shed']} / {stats['closed_record_timeout']}")
    figure(scenario, "peak live connections", got["peak_live"], f"<= {CONCURRENCY}")
    assert not got["failures"], got["failures"][:5]
    assert len(latencies) >= N_NORMAL * ATTACK / 0.2, "good clients were not served"
    assert p99 < P99_BUDGET, (f"good p99 {p99 * 1000:.0f} ms with the host stealing "
                              f"{got['steal_share']:.0%} of the CPU time")
    assert stats["closed_shed"] >= N_SLOW
    assert set(errors) <= {"ConnectionShedError", "RecordTimeoutError"}, errors
    shed = errors["ConnectionShedError"]
    assert shed["count"] == stats["closed_shed"]
    assert all(m.startswith("shed at capacity") for m in shed["messages"]), shed["messages"]
    assert got["peak_live"] <= CONCURRENCY
