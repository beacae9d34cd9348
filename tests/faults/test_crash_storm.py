"""Scenario 9: handler crash storm.

10,000 exceptions from the application's ``client_input`` (with ``client_shutdown_on_error=False``,
so each one goes through ``client_error`` and the connection goes on), then 500 connections whose
handler dies on its first line. The server (in a subprocess, with the default ``client_error``,
which logs) keeps serving; its RSS stays flat; the log stays bounded because identical messages
are rate-limited (``ErrorLogLimiter``: 3 in full, then one line saying the rest are counted,
and a summary with the count at the end of the minute or at the stop).
"""

from __future__ import annotations

import gevent
import pytest
from faultkit import MB, client, echo_round_trip, figure, poll, readline, rss_bytes

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

N_EXCEPTIONS = 10_000
N_CLIENTS = 10
WARM_UP = 1_000
#: "Flat": keeping even 200 bytes per exception would show as 2 MB.
RSS_FLAT = 2 * MB
#: Log lines allowed for the whole storm: a few full tracebacks and summaries, not one per crash.
LOG_LINES = 200


def _storm(address, per_client: int) -> None:
    """N_CLIENTS clients each pipeline ``per_client`` crash lines then a ping, and await it."""

    def one(i: int) -> None:
        sock = client(address)
        sock.sendall(b"crash\n" * per_client + b"ping %d\n" % i)
        assert readline(sock, bytearray()) == b"ping %d" % i  # every crash line was handled
        sock.close()

    gevent.joinall([gevent.spawn(one, i) for i in range(N_CLIENTS)], timeout=60,
                   raise_error=True)


def test_ten_thousand_handler_exceptions_leave_the_server_serving_with_flat_memory(
        server_process):
    scenario = "9 crash storm"
    server = server_process({"app": "crash", "report_errors": False,
                             "options": {"client_shutdown_on_error": False}})
    _storm(server.address, WARM_UP // N_CLIENTS)
    rss_before = rss_bytes(server.pid)
    log_before = server.log_path.read_bytes()
    _storm(server.address, N_EXCEPTIONS // N_CLIENTS)
    rss_after = rss_bytes(server.pid)
    stats = poll(lambda: (s := server.stats())["live_connections"] == 0 and s,
                 "the storm's connections to end")
    log_storm = server.log_path.read_bytes()[len(log_before):]
    sock = client(server.address)
    still = echo_round_trip(sock, bytearray(), b"still serving")
    sock.close()

    lines = log_storm.count(b"\n")
    figure(scenario, "exceptions (measured run)", N_EXCEPTIONS)
    figure(scenario, "client_errors counted", stats["client_errors"],
           f"== {WARM_UP + N_EXCEPTIONS}")
    figure(scenario, "RSS growth over 10,000 (MB)", (rss_after - rss_before) / MB, "< 2")
    figure(scenario, "log lines for 10,000", lines, f"< {LOG_LINES}")
    figure(scenario, "log bytes for 10,000", len(log_storm))
    figure(scenario, "log lines in all (warm-up included)",
           server.log_path.read_bytes().count(b"\n"), f"< {LOG_LINES}")
    figure(scenario, "echo after the storm (ms)", still * 1000)
    assert stats["client_errors"] == WARM_UP + N_EXCEPTIONS
    assert rss_after - rss_before < RSS_FLAT
    assert lines < LOG_LINES, log_storm[-2000:].decode(errors="replace")
    assert b"Traceback" in server.log_path.read_bytes(), "exceptions are logged with traceback"
    assert stats["live_connections"] == 0


def test_handlers_dying_on_500_connections_leave_the_server_serving(server_process):
    scenario = "9 crash storm (handler dies)"
    n = 500
    server = server_process({"app": "die", "report_errors": False})
    rss_start = rss_bytes(server.pid)

    def one(i: int) -> bytes:
        sock = client(server.address)
        sock.sendall(b"die\n")
        data = sock.recv(100)  # b"" once the connection is closed after the crash
        sock.close()
        return data

    runs = [gevent.spawn(one, i) for i in range(n)]
    gevent.joinall(runs, timeout=60, raise_error=True)
    stats = poll(lambda: (s := server.stats())["live_connections"] == 0 and s,
                 "the crashed connections to end")
    log = server.log_path.read_bytes()
    figure(scenario, "connections closed after a crash", sum(r.get() == b"" for r in runs),
           f"== {n}")
    figure(scenario, "client_errors counted", stats["client_errors"], f"== {n}")
    figure(scenario, "RSS growth (MB)", (rss_bytes(server.pid) - rss_start) / MB)
    figure(scenario, "log lines", log.count(b"\n"), f"< {LOG_LINES}")
    assert all(r.get() == b"" for r in runs)
    assert stats["client_errors"] == n
    assert log.count(b"\n") < LOG_LINES
    assert stats["live_connections"] == 0
