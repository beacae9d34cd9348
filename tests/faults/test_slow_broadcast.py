"""Scenario 4: a slow broadcast target.

A chat-style server (each line is put to every other client, as in ``examples/chat.py``) with the
default ``output_limit``. Two broadcasters send 100 MB of lines in all while one client never
reads. Every broadcast (the ``put`` loop) returns at once; the slow client is shut down with
``SlowClientError`` once its queued output passes ``output_limit``; the reading client gets every
byte of both broadcasts.
"""

from __future__ import annotations

import time

import gevent
import gevent.event
import pytest
from faultkit import DEADLINE, MB, client, figure, poll

import greensrv
from greensrv.defaults import DEFAULT_OUTPUT_LIMIT

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

LINE = 8 * 1024  # bytes per broadcast line, terminator included
PER_BROADCASTER = 50 * MB
#: A put loop over a handful of clients is microseconds of work; 50 ms would mean it waited.
BROADCAST_BUDGET = 0.050
#: Most bytes broadcast ahead of what the readers have received: well under output_limit.
WINDOW = 2 * MB


def test_broadcasts_never_block_and_the_non_reader_is_cut_at_output_limit(make_server):
    scenario = "4 slow broadcast target"
    durations: list[float] = []
    errors: list[tuple[object, BaseException]] = []

    def broadcast(conn, line):
        start = time.perf_counter()
        for other in conn.server.connections:
            if other is not conn:
                other.put(line)
        durations.append(time.perf_counter() - start)

    server = make_server(client_input=broadcast,
                         client_error=lambda conn, exc: errors.append((conn, exc)))
    slow = client(server.address, rcvbuf=4096)
    slow_port = slow.getsockname()[1]
    reader = client(server.address)
    broadcasters = [client(server.address) for _ in range(2)]
    poll(lambda: len(server.connections) == 4, "all four clients to connect")

    progress = gevent.event.Event()

    def count_bytes(sock, total: list[int]) -> None:
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return
            total[0] += len(data)
            progress.set()

    received = [[0] for _ in range(3)]
    counting = [gevent.spawn(count_bytes, s, r)
                for s, r in zip([reader, *broadcasters], received, strict=True)]
    payload = b"b" * (LINE - 2) + b"\r\n"
    chunk = payload * (MB // LINE)

    sent_by = [0, 0]

    def lag() -> int:
        """Most bytes any reading client is behind (broadcaster j gets the other's lines)."""
        return max(sum(sent_by) - received[0][0],
                   *(sent_by[1 - j] - received[1 + j][0] for j in range(2)))

    def send(i: int, sock) -> None:
        for _ in range(PER_BROADCASTER // len(chunk)):
            # Keep within WINDOW of the reading clients, as people chatting do: a reader that
            # keeps up must never be taken for a slow one (which output_limit would cut).
            while lag() > WINDOW:
                progress.clear()
                assert progress.wait(DEADLINE), "the readers stopped reading"
            sock.sendall(chunk)
            sent_by[i] += len(chunk)

    start = time.monotonic()
    senders = [gevent.spawn(send, i, s) for i, s in enumerate(broadcasters)]
    gevent.joinall(senders, timeout=60, raise_error=True)
    expected_reader = 2 * PER_BROADCASTER
    poll(lambda: received[0][0] >= expected_reader, "the reader to get every broadcast",
         timeout=60)
    took = time.monotonic() - start
    slow_errors = [exc for conn, exc in errors if conn.remote_port == slow_port]
    poll(lambda: not any(c.remote_port == slow_port for c in server.connections),
         "the slow client to be gone")
    gevent.killall(counting, timeout=10)
    for sock in [reader, *broadcasters, slow]:
        sock.close()

    worst = max(durations)
    queued = int(str(slow_errors[0]).split(": ")[1].split()[0]) if slow_errors else -1
    figure(scenario, "bytes broadcast", 2 * PER_BROADCASTER)
    figure(scenario, "broadcasts (put loops)", len(durations))
    figure(scenario, "slowest broadcast (ms)", worst * 1000, f"< {BROADCAST_BUDGET * 1000:g}")
    figure(scenario, "slow client's queued bytes when cut", queued,
           f"> output_limit {DEFAULT_OUTPUT_LIMIT}")
    figure(scenario, "reader got (MB)", received[0][0] / MB, f"== {expected_reader / MB:g}")
    figure(scenario, "throughput (MB/s broadcast in)", 2 * PER_BROADCASTER / MB / took)
    assert len(slow_errors) == 1 and isinstance(slow_errors[0], greensrv.SlowClientError), errors
    assert "output_limit" in str(slow_errors[0])
    assert [exc for conn, exc in errors if conn.remote_port != slow_port] == []
    assert received[0][0] == expected_reader
    assert worst < BROADCAST_BUDGET
    assert server.statistics().closed_output_limit == 1
