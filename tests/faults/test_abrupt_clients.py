"""Scenario 7: abrupt clients.

1,000 clients connect and reset (SO_LINGER 0): at once, in the middle of a line, and with replies
still queued for them. Meanwhile 100 clients pipeline 50 lines each and half-close (SHUT_WR):
they still get every reply, then FIN. Afterwards the server holds no connection, no descriptor
and no greenlet more than before, and a reset was never reported as an error.
"""

from __future__ import annotations

import gc
import os

import gevent
import gevent.pool
import greenlet
import pytest
from faultkit import client, figure, poll, read_until_eof, reset

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

N_RESETS = 1000
N_HALF_CLOSERS = 100
N_LINES = 50


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _greenlets() -> int:
    gc.collect()
    hub = gevent.get_hub()
    return sum(1 for g in gc.get_objects()
               if isinstance(g, greenlet.greenlet) and g is not hub and g and not g.dead
               and g.parent is not None)


def test_resets_and_half_closes_lose_no_reply_and_leak_nothing(make_server):
    scenario = "7 abrupt clients"
    errors = []

    def echo(conn):
        for line in conn:
            conn.put(line)

    server = make_server(echo, client_error=lambda conn, exc: errors.append(exc))
    fds_before, glets_before = _fds(), _greenlets()

    def resetter(i: int) -> None:
        sock = client(server.address)
        kind = i % 3
        if kind == 1:
            sock.sendall(b"half a li")  # reset in the middle of a record
        elif kind == 2:
            sock.sendall(b"x" * 1000 + b"\n" * 2000)  # replies queued, never read
        reset(sock)

    def half_closer(i: int):
        sock = client(server.address)
        lines = [b"hc%d-%d" % (i, n) for n in range(N_LINES)]
        sock.sendall(b"".join(line + b"\n" for line in lines))
        sock.shutdown(gevent.socket.SHUT_WR)
        data, how = read_until_eof(sock)
        sock.close()
        return data == b"".join(line + b"\r\n" for line in lines), how

    pool = gevent.pool.Pool(200)  # at most 200 resetting clients at a time
    resets = [pool.spawn(resetter, i) for i in range(N_RESETS)]
    halves = [gevent.spawn(half_closer, i) for i in range(N_HALF_CLOSERS)]
    gevent.joinall(resets + halves, timeout=60, raise_error=True)
    results = [g.get() for g in halves]
    complete = sum(1 for ok, _ in results if ok)
    fins = sum(1 for _, how in results if how == "fin")
    poll(lambda: server.statistics().live_connections == 0 and not server.connections,
         "every connection to end")
    stats = server.statistics()
    poll(lambda: _fds() <= fds_before, "descriptors back to the baseline", timeout=5)
    leaked_fds = _fds() - fds_before
    poll(lambda: _greenlets() <= glets_before, "client greenlets to end", timeout=5)
    leaked_glets = _greenlets() - glets_before

    figure(scenario, "reset clients", N_RESETS)
    figure(scenario, "connections accepted", stats.accepted, f"== {N_RESETS + N_HALF_CLOSERS}")
    figure(scenario, "half-closers with every reply", complete, f"== {N_HALF_CLOSERS}")
    figure(scenario, "half-closers ended by FIN", fins, f"== {N_HALF_CLOSERS}")
    figure(scenario, "errors reported for resets", len(errors), "== 0")
    figure(scenario, "descriptors leaked", leaked_fds, "== 0")
    figure(scenario, "greenlets leaked", leaked_glets, "<= 0")
    assert complete == N_HALF_CLOSERS
    assert fins == N_HALF_CLOSERS
    assert stats.accepted == N_RESETS + N_HALF_CLOSERS
    assert errors == [], errors[:5]
    assert leaked_fds <= 0
    assert leaked_glets <= 0
    # Still serving.
    sock = client(server.address)
    sock.sendall(b"still here\n")
    assert sock.recv(100) == b"still here\r\n"
    sock.close()
