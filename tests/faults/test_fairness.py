"""Fairness: one client streaming input at full speed never stalls the others.

The flooding client runs in its own process (blocking sockets, one thread sending pipelined lines
as fast as the server takes them, one draining the echoes), so the only thing it shares with the
measuring clients is the server. The server reads at most one ``RECV_SIZE`` chunk (64 KiB) per
loop iteration for each client, so the other clients' round trips stay short.
"""

from __future__ import annotations

import subprocess
import sys
import time

import gevent
import pytest
from faultkit import client, echo_round_trip, figure, percentile

pytestmark = [pytest.mark.faults, pytest.mark.timeout(60)]

P99_BUDGET = 0.100
FLOOD_SECONDS = 4.0

FLOODER = r"""
import socket, sys, threading, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
sock = socket.create_connection(("127.0.0.1", port))
chunk = b"".join(b"%063d\n" % i for i in range(4096))
received = 0
def drain():
    global received
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return
        received += len(data)
reader = threading.Thread(target=drain)
reader.start()
sent, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    sock.sendall(chunk)
    sent += len(chunk)
sock.shutdown(socket.SHUT_WR)
reader.join()
print(sent, received)
"""


def echo(conn):
    for line in conn:
        conn.put(line)


def test_a_flooding_client_does_not_stall_the_others(make_server):
    server = make_server(echo)
    flooder = subprocess.Popen([sys.executable, "-c", FLOODER, str(server.address[1]),
                                str(FLOOD_SECONDS)], stdout=subprocess.PIPE, text=True)
    latencies: list[float] = []

    def measure(sock):
        buf = bytearray()
        while flooder.poll() is None:
            latencies.append(echo_round_trip(sock, buf, b"ping"))
            gevent.sleep(0.005)  # pacing: about 200 round trips a second per client

    socks = [client(server.address) for _ in range(5)]
    try:
        start = time.monotonic()
        gevent.joinall([gevent.spawn(measure, s) for s in socks], timeout=FLOOD_SECONDS + 20,
                       raise_error=True)
        out, _ = flooder.communicate(timeout=20)
    finally:
        for s in socks:
            s.close()
        if flooder.poll() is None:
            flooder.kill()
    sent, received = (int(x) for x in out.split())
    p99 = percentile(latencies, 99)
    figure("fairness", "flood MB/s", round(sent / (time.monotonic() - start) / 1e6, 1))
    figure("fairness", "other clients' round trips", len(latencies))
    figure("fairness", "other clients' p99 (ms)", round(p99 * 1000, 1), f"< {P99_BUDGET * 1000:g}")
    assert received == sent // 64 * 65, "the flooding client lost bytes"  # each \n echoed as \r\n
    assert sent > 10_000_000, "the flood was not a flood"
    assert len(latencies) > 100
    assert p99 < P99_BUDGET
