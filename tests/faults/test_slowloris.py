"""Scenario 1: slowloris.

500 connections from 127.0.0.1 each send one byte per second and never finish a line,
reconnecting a second after they are dropped (a persistent attacker, ``slowloris_attack.py``,
in its own process so that its work does not delay the measuring clients); the server runs, in
a subprocess too, with
``concurrency=100``. 20 normal clients, from 127.0.0.2 to 127.0.0.21, each connect, send a line,
await the echo and close, over and over; their round trip is timed from ``connect``.

A window in which the hypervisor stole a tenth or more of this machine's CPU time (``steal``
in /proc/stat, which pauses server and clients alike) and that missed the budget is measured
again, in a fresh server, at most three times in all; a miss in a quiet window fails at once.
Every window's figures are reported.

How the 100 ms p99 is met honestly: ``concurrency`` alone cannot protect the normal clients,
since past it every client waits in one FIFO backlog, behind the attackers, until
``record_timeout`` frees a slot (the second test measures this and is an expected failure).
What does protect them is ``max_connections_per_ip=50``: the attacker's address never holds more
than half the slots, the rest are refused at accept, and ``record_timeout`` (2 s here so the test
is short; the default is 30 s) closes the dripping connections it does hold.
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
from faultkit import HERE, client, figure, host_steal_seconds, percentile, readline

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


def _attack_and_measure(server) -> dict:
    over = gevent.event.Event()
    latencies: list[float] = []
    peak_live = [0]

    def normal(i: int) -> None:
        source = f"127.0.0.{2 + i}"
        n = 0
        while not over.is_set():
            start = time.perf_counter()
            sock = client(server.address, source=source, timeout=ATTACK + 10)
            try:
                sock.sendall(b"normal %d %d\n" % (i, n))
                assert readline(sock, bytearray()) == b"normal %d %d" % (i, n)
            finally:
                sock.close()
            latencies.append(time.perf_counter() - start)
            n += 1
            over.wait(0.1)  # request pacing

    def watch() -> None:
        while not over.is_set():
            peak_live[0] = max(peak_live[0], server.stats()["live_connections"])
            over.wait(0.05)  # sampling interval

    attack = gevent.subprocess.Popen(
        [sys.executable, str(HERE / "slowloris_attack.py"), *map(str, server.address),
         str(N_SLOW), str(1.0 + ATTACK)], stdout=gevent.subprocess.PIPE)
    try:
        assert attack.stdout.readline() == b"started\n"
        watcher = gevent.spawn(watch)
        over.wait(1.0)  # the attackers take their slots first
        normals = [gevent.spawn(normal, i) for i in range(N_NORMAL)]
        over.wait(ATTACK)  # the attack runs
        over.set()
        gevent.joinall(normals, timeout=ATTACK + 20, raise_error=True)
        watcher.kill()
        result = json.loads(attack.stdout.readline())
        assert attack.wait(timeout=10) == 0
    finally:
        if attack.poll() is None:
            attack.kill()
            attack.wait()
        attack.stdout.close()
    return dict(held=result["held"], refused=result["refused"], latencies=latencies,
                peak_live=peak_live[0], stats=server.stats())


def _measure_in_a_quiet_window(server_process, options: dict, scenario: str) -> dict:
    """Attack a fresh server; again (up to WINDOWS) while the budget is missed under host steal."""
    for window in range(1, WINDOWS + 1):
        server = server_process({"app": "echo", "options": options})
        wall, steal = time.monotonic(), host_steal_seconds()
        got = _attack_and_measure(server)
        wall, steal = time.monotonic() - wall, host_steal_seconds() - steal
        share = steal / (wall * (os.cpu_count() or 1))
        got["p99"] = percentile(got["latencies"], 99)
        figure(scenario, f"window {window}: normal p99 (ms) / host steal",
               f"{got['p99'] * 1000:.3g} / {share:.0%}",
               f"< {P99_BUDGET * 1000:g}; a miss under steal >= {DISTURBED_STEAL_SHARE:.0%} "
               "is measured again")
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


@pytest.mark.xfail(strict=True, reason=(
    "concurrency alone cannot keep normal clients under 100 ms: past it every client waits in "
    "one FIFO backlog behind the attackers until record_timeout frees slots (measured p99: "
    "about 6 s with record_timeout=2 s, each normal client served about once in the 6 s "
    "attack); use max_connections_per_ip (previous test)"))
def test_slowloris_with_concurrency_and_record_timeout_alone(server_process):
    scenario = "1 slowloris (no per-IP limit)"
    server = server_process({"app": "echo", "options": dict(
        concurrency=CONCURRENCY, record_timeout=RECORD_TIMEOUT)})
    got = _attack_and_measure(server)
    latencies = got["latencies"]
    p99 = percentile(latencies, 99)
    figure(scenario, "normal round trips", len(latencies))
    figure(scenario, "normal p99 (ms)", p99 * 1000, f"< {P99_BUDGET * 1000:g} (xfail)")
    figure(scenario, "slow connections closed by record_timeout",
           got["stats"]["closed_record_timeout"])
    assert got["stats"]["closed_record_timeout"] >= CONCURRENCY
    assert p99 < P99_BUDGET
