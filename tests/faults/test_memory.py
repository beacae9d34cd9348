"""Scenarios 2 and 3: clients that try to make the server buffer without bound.

The server runs in a subprocess (``fault_server.py``, the POE-style echo), so its resident set
size can be read from ``/proc``: sampled every 5 ms and backed by the kernel's high-water mark
(``VmHWM``, reset at the start of the measurement through ``clear_refs``).

2. memory bomb: one client sends 200 MB with no newline. ``Line.max_length`` (64 KiB) ends it
   with a ``FilterError`` long before that; RSS grows by less than 16 MB and good clients keep
   their echoes (p99 under 100 ms).
3. non-reader: one client sends 100 MB of lines and never reads the echoes. Once its queued
   output passes ``high_mark`` the server stops reading from it, so the client's sends stall in
   the kernel's buffers; RSS grows by less than 16 MB and good clients are unaffected.
"""

from __future__ import annotations

import time

import gevent
import gevent.event
import pytest
from faultkit import (
    MB,
    PeakSampler,
    client,
    echo_round_trip,
    figure,
    percentile,
    reset,
    warm_up,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

RSS_BUDGET = 16 * MB
P99_BUDGET = 0.100


class GoodClients:
    """A few clients echoing a line every 10 ms until stopped; latencies collected."""

    def __init__(self, address, n: int = 4) -> None:
        self.latencies: list[float] = []
        self._done = gevent.event.Event()
        self._socks = [client(address) for _ in range(n)]
        self._glets = [gevent.spawn(self._run, i, s) for i, s in enumerate(self._socks)]

    def _run(self, i: int, sock) -> None:
        buf = bytearray()
        n = 0
        while not self._done.is_set():
            self.latencies.append(echo_round_trip(sock, buf, b"good %d %d" % (i, n)))
            n += 1
            self._done.wait(0.01)  # request pacing

    def stop(self) -> list[float]:
        self._done.set()
        gevent.joinall(self._glets, timeout=10, raise_error=True)
        for sock in self._socks:
            sock.close()
        return self.latencies



def test_memory_bomb_without_newline_is_cut_at_max_length(server_process):
    scenario = "2 memory bomb"
    server = server_process({"app": "echo"})
    warm_up(server.address)
    goods = GoodClients(server.address)
    sampler = PeakSampler(server.pid)
    bomb = client(server.address)
    chunk = b"x" * (1 * MB)
    sent = 0
    ended = "sent everything"
    start = time.monotonic()
    try:
        while sent < 200 * MB:
            bomb.sendall(chunk)
            sent += len(chunk)
    except OSError as exc:
        ended = type(exc).__name__
    cut_after = time.monotonic() - start
    bomb.close()
    stats = server.stats()
    growth = sampler.growth()
    latencies = goods.stop()
    p99 = percentile(latencies, 99)

    errors = stats["errors"]
    figure(scenario, "bytes the bomb got to send", sent, "< 200 MB")
    figure(scenario, "bomb's send ended by", ended)
    figure(scenario, "bomb cut after (s)", cut_after)
    figure(scenario, "server RSS growth (MB)", growth / MB, "< 16")
    figure(scenario, "good clients' p99 echo (ms)", p99 * 1000, f"< {P99_BUDGET * 1000:g}")
    assert list(errors) == ["FilterError"], errors
    assert errors["FilterError"]["count"] == 1
    assert "max_length" in errors["FilterError"]["messages"][0]
    assert stats["closed_filter_error"] == 1
    assert sent < 200 * MB
    assert growth < RSS_BUDGET
    assert p99 < P99_BUDGET


def test_non_reader_sending_100_mb_of_lines_is_held_by_backpressure(server_process):
    scenario = "3 non-reader"
    server = server_process({"app": "echo"})
    warm_up(server.address)
    goods = GoodClients(server.address)
    sampler = PeakSampler(server.pid)
    hog = client(server.address)
    line = b"y" * 99 + b"\n"
    chunk = line * (64 * 1024 // len(line))
    progress = [0]

    def send_forever():
        while progress[0] < 100 * MB:
            hog.sendall(chunk)
            progress[0] += len(chunk)

    sender = gevent.spawn(send_forever)
    # Wait until the sends stall: no progress for one second (bounded by an overall deadline).
    deadline = time.monotonic() + 60
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline and not sender.dead:
        if progress[0] != last:
            last, since = progress[0], time.monotonic()
        elif time.monotonic() - since > 1.0:
            break
        gevent.sleep(0.05)  # poll interval
    stalled = not sender.dead
    sent = progress[0]
    stats = server.stats()
    growth = sampler.growth()
    latencies = goods.stop()
    sender.kill()
    reset(hog)
    p99 = percentile(latencies, 99)

    figure(scenario, "bytes the non-reader got to send", sent, "< 100 MB (stalled)")
    figure(scenario, "server bytes_in while stalled", stats["bytes_in"])
    figure(scenario, "server RSS growth (MB)", growth / MB, "< 16")
    figure(scenario, "good clients' p99 echo (ms)", p99 * 1000, f"< {P99_BUDGET * 1000:g}")
    assert stalled, "the non-reader sent 100 MB: the server kept reading"
    assert sent < 100 * MB
    assert stats["errors"] == {}, stats["errors"]
    assert growth < RSS_BUDGET
    assert p99 < P99_BUDGET
    # The server is fine afterwards.
    sock = client(server.address)
    assert echo_round_trip(sock, bytearray(), b"after") < 1.0
    sock.close()
