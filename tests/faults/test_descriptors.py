"""Scenario 5: descriptor exhaustion.

The echo server runs in a subprocess with ``RLIMIT_NOFILE=256``; 400 clients connect and each
sends a line. The server accepts until ``accept()`` fails with EMFILE; the rest wait in the
kernel's backlog. While saturated it keeps serving the clients it has, uses under 30% of a core
(measured from ``/proc/PID/stat`` over two seconds) and logs the condition once. Once 200 old
clients leave, every waiting client is accepted and answered.
"""

from __future__ import annotations

import time

import gevent
import gevent.event
import pytest
from faultkit import DEADLINE, client, cpu_seconds, figure, open_fds, poll, readline

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

NOFILE = 256
N_CLIENTS = 400
CPU_BUDGET = 0.30
WINDOW = 2.0


def test_descriptor_exhaustion_keeps_serving_without_spinning_and_recovers(server_process):
    scenario = "5 descriptor exhaustion"
    server = server_process({"app": "echo", "nofile": NOFILE})
    answered: dict[int, float] = {}
    socks = []
    readers = []

    def first_echo(i: int, sock) -> None:
        buf = bytearray()
        assert readline(sock, buf) == b"hello %d" % i
        answered[i] = time.monotonic()

    for i in range(N_CLIENTS):
        sock = client(server.address, timeout=DEADLINE + 10)
        sock.sendall(b"hello %d\n" % i)
        socks.append(sock)
        readers.append(gevent.spawn(first_echo, i, sock))

    # Saturated: accepting has failed with EMFILE and the number served stops growing.
    poll(lambda: server.stats()["accept_capacity_errors"] > 0, "accept to hit EMFILE")
    last = [-1]

    def settled() -> bool:
        n, last[0] = last[0], len(answered)
        return n == len(answered)

    poll(settled, "the served clients to settle", interval=0.2)
    served = sorted(answered)
    waiting = [i for i in range(N_CLIENTS) if i not in answered]
    fds = open_fds(server.pid)

    # Two seconds of saturation: the served clients keep talking; measure the server's CPU.
    talkers = served[:20]
    stop = gevent.event.Event()
    round_trips = [0]

    def talk(i: int) -> None:
        sock = socks[i]
        buf = bytearray()
        n = 0
        while not stop.is_set():
            sock.sendall(b"again %d %d\n" % (i, n))
            assert readline(sock, buf) == b"again %d %d" % (i, n)
            round_trips[0] += 1
            n += 1
            stop.wait(0.05)  # request pacing

    talking = [gevent.spawn(talk, i) for i in talkers]
    cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
    stop.wait(WINDOW)  # the measurement window
    cpu = (cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - wall_start)
    stop.set()
    gevent.joinall(talking, timeout=10, raise_error=True)
    log_while_saturated = server.log()
    saturated_stats = server.stats()

    # 200 old clients leave; every waiting client must then be accepted and answered.
    leaving = served[:200]
    left_at = time.monotonic()
    for i in leaving:
        socks[i].close()
    gevent.joinall([readers[i] for i in waiting], timeout=DEADLINE, raise_error=True)
    recovered_in = max(answered[i] for i in waiting) - left_at if waiting else 0.0
    for sock in socks:
        sock.close()
    log = server.log()

    figure(scenario, "clients served while saturated", len(served), f"of {N_CLIENTS}")
    figure(scenario, "server descriptors while saturated", fds, f"limit {NOFILE}")
    figure(scenario, "accept EMFILE errors while saturated",
           saturated_stats["accept_capacity_errors"])
    figure(scenario, "echo round trips while saturated", round_trips[0])
    figure(scenario, "server CPU while saturated (core)", cpu, f"< {CPU_BUDGET}")
    figure(scenario, "'cannot accept' log lines", log_while_saturated.count("cannot accept"),
           "== 1")
    figure(scenario, "waiting clients answered after 200 left", len(waiting),
           f"== {N_CLIENTS - len(served)}")
    figure(scenario, "recovered within (s)", recovered_in, "< 2")
    assert 0 < len(served) < N_CLIENTS
    assert round_trips[0] > 0
    assert cpu < CPU_BUDGET
    assert log_while_saturated.count("cannot accept") == 1, log_while_saturated
    assert all(i in answered for i in range(N_CLIENTS))
    assert recovered_in < 2.0
    assert "accepting again" in log

