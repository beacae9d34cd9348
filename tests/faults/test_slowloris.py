"""Scenario 1: slowloris.

1: 500 connections from 127.0.0.1 each send one byte per second and never finish a line,
reconnecting a second after they are dropped (a persistent attacker, ``slowloris_attack.py``,
in its own process so that its work does not delay the measuring clients); the server runs, in
a subprocess too, with
``concurrency=100``. 20 normal clients, from 127.0.0.2 to 127.0.0.21, each connect, send a line,
await the echo and close, over and over; their round trip is timed from ``connect``.

A window in which the hypervisor or other processes on this machine took a tenth or more of its
CPU time and that missed the budget is measured again (``overload_kit``).

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

import pytest
from faultkit import figure, percentile
from overload_kit import measure_in_a_quiet_window

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

N_SLOW = 500
N_NORMAL = 20
CONCURRENCY = 100
RECORD_TIMEOUT = 2.0
ATTACK = 6.0  # seconds the attack and the normal clients run
P99_BUDGET = 0.100


def test_slowloris_with_a_per_ip_limit_keeps_normal_clients_under_100ms(server_process):
    scenario = "1 slowloris (per-IP limit 50)"
    spec = {"app": "echo", "options": dict(concurrency=CONCURRENCY, max_connections_per_ip=50,
                                           record_timeout=RECORD_TIMEOUT)}
    got = measure_in_a_quiet_window(lambda: server_process(spec), scenario, P99_BUDGET,
                                    seconds=ATTACK, dripping=N_SLOW, good=N_NORMAL)
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
    spec = {"app": "echo", "options": dict(concurrency=CONCURRENCY)}
    got = measure_in_a_quiet_window(lambda: server_process(spec), scenario, P99_BUDGET,
                                    seconds=ATTACK, dripping=N_SLOW, good=N_NORMAL, sources=50,
                                    pause=0.0, pacing=0.05)
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
