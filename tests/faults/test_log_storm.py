"""Scenario 8b: the error log under an attack of bad clients.

Bad TLS clients (plaintext sent to a TLS port) and garbage clients (a line that is not UTF-8,
sent to a plaintext line server), from 100 loopback addresses, against one server process with
the default ``client_error`` (the rate-limited log): the log holds a few examples of each kind
and one summary per kind and minute giving the count and the distinct addresses, at most 50
lines a minute in all, while ``statistics()`` counts every client. The servers stop gracefully
at the end, which writes the summaries of the minute not yet over.

Short form: 1,200 TLS and 600 garbage clients; ``GREENSRV_LONG_FAULTS=1``: 12,000 and 6,000.
"""

from __future__ import annotations

import json
import re
import sys
import time

import gevent
import gevent.subprocess
import pytest
from faultkit import DEADLINE, HERE, LONG, figure, poll

pytestmark = [pytest.mark.faults, pytest.mark.timeout(600 if LONG else 180)]

N_TLS = 12_000 if LONG else 1_200
N_GARBAGE = 6_000 if LONG else 600
SOURCES = 100
CONCURRENCY = 50  # bad clients at a time, per kind
LINES_PER_MINUTE = 50
SUMMARY = re.compile(r"(TLS handshake failure|malformed record): (\d+) in the last [\d.]+ s "
                     r"from (\d+) distinct address")


def _bad_clients(port: int, n: int, kind: str) -> gevent.subprocess.Popen:
    return gevent.subprocess.Popen(
        [sys.executable, str(HERE / "bad_clients.py"), "127.0.0.1", str(port), str(n), kind,
         str(CONCURRENCY), str(SOURCES)], stdout=gevent.subprocess.PIPE)


def _result(proc: gevent.subprocess.Popen) -> dict:
    try:
        line = proc.stdout.readline()
        assert proc.wait(timeout=DEADLINE) == 0
        return dict(json.loads(line))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_bad_clients_cost_a_few_log_lines_per_kind_and_are_all_counted(server_process,
                                                                         certificate):
    scenario = "8b log under bad TLS and garbage clients"
    server = server_process({"app": "echo", "report_errors": False, "tls": list(certificate),
                             "also": {}})
    log_before = len(server.log_path.read_bytes())
    started = time.monotonic()
    procs = [_bad_clients(server.port, N_TLS, "plaintext"),
             _bad_clients(server.port2, N_GARBAGE, "garbage")]
    tls, garbage = (_result(p) for p in procs)
    attack = time.monotonic() - started
    stats = poll(lambda: (s := server.stats())["tls_failures"] >= N_TLS
                 and s["also"]["closed_filter_error"] >= N_GARBAGE and s,
                 "statistics() to count every bad client")
    assert server.stop() == 0  # writes the summaries of the minute not yet over
    log = server.log_path.read_text(errors="replace")[log_before:]
    lines = log.splitlines()
    minutes = max(1.0, attack / 60)
    totals: dict[str, int] = {}
    addresses: dict[str, set[int]] = {}
    for match in SUMMARY.finditer(log):
        totals[match[1]] = totals.get(match[1], 0) + int(match[2])
        addresses.setdefault(match[1], set()).add(int(match[3]))

    figure(scenario, "bad TLS / garbage clients", f"{tls['done']} / {garbage['done']}",
           f"{N_TLS} / {N_GARBAGE}")
    figure(scenario, "attack (s)", attack)
    figure(scenario, "tls_failures / closed_filter_error",
           f"{stats['tls_failures']} / {stats['also']['closed_filter_error']}")
    figure(scenario, "log lines in all", len(lines),
           f"<= {LINES_PER_MINUTE} a minute ({minutes:.2g} min)")
    figure(scenario, "summed by the summaries: TLS / malformed",
           f"{totals.get('TLS handshake failure')} / {totals.get('malformed record')}")
    assert (tls["done"], garbage["done"]) == (N_TLS, N_GARBAGE)
    assert stats["tls_failures"] == N_TLS and stats["client_errors"] == N_TLS
    assert stats["also"]["closed_filter_error"] == N_GARBAGE
    assert stats["also"]["client_errors"] == N_GARBAGE
    assert len(lines) <= LINES_PER_MINUTE * minutes, log[-3000:]
    assert totals == {"TLS handshake failure": N_TLS, "malformed record": N_GARBAGE}, log
    assert addresses == {"TLS handshake failure": {SOURCES}, "malformed record": {SOURCES}}, log
