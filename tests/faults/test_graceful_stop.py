"""Scenario 6: graceful stop under load.

200 clients each pipeline 50 lines (in paced bursts, so the stop lands mid-stream); the server is
stopped midway. Every line the server read gets its reply, every connection ends with FIN (a
reset shows up on the client as ECONNRESET), and the server is done within its
``shutdown_timeout`` plus one second. Clients close their socket when they see EOF, as any client
does.
"""

from __future__ import annotations

import signal
import sys
import time

import gevent
import gevent.event
import gevent.socket
import pytest
from faultkit import EXAMPLES, client, figure, poll
from helpers import free_port

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

N_CLIENTS = 200
N_LINES = 50
BURSTS = 5  # each client sends its 50 lines as 5 pipelined bursts of 10
BURST_GAP = 0.05  # seconds between one client's bursts: the load pattern, not synchronisation


def _lines(i: int) -> list[bytes]:
    return [b"client%d-line%d" % (i, n) for n in range(N_LINES)]


def _run_client(sock, lines: list[bytes], half_close: bool, progress: list[int]):
    """Send the lines in bursts while reading replies; close on EOF. Returns (data, how)."""
    per_burst = len(lines) // BURSTS
    stop_sending = gevent.event.Event()

    def sender():
        for b in range(BURSTS):
            if stop_sending.is_set():
                return
            burst = lines[b * per_burst:(b + 1) * per_burst]
            try:
                sock.sendall(b"".join(line + b"\n" for line in burst))
            except OSError:
                return
            if b < BURSTS - 1:
                stop_sending.wait(BURST_GAP)  # pacing; wakes at once when EOF arrives
        if half_close:
            sock.shutdown(gevent.socket.SHUT_WR)

    sending = gevent.spawn(sender)
    chunks = []
    how = "timeout"
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                how = "fin"
                break
            chunks.append(data)
            progress[0] += data.count(b"\n")
    except ConnectionResetError:
        how = "rst"
    except TimeoutError:
        how = "timeout"
    stop_sending.set()
    sending.join(timeout=5)
    sending.kill()
    sock.close()
    return b"".join(chunks), how


def _check_replies(scenario, results, sent, read_by_server=None):
    """Every reply is a complete echo of a line sent, in order; returns figures."""
    ends = {"fin": 0, "rst": 0, "timeout": 0}
    received_total = lost = 0
    for i, (data, how) in enumerate(results):
        ends[how] += 1
        assert data.endswith(b"\r\n") or not data, f"client {i}: a reply was cut: {data[-40:]!r}"
        got = data.split(b"\r\n")[:-1]
        assert got == sent[i][:len(got)], f"client {i}: replies are not a prefix of its lines"
        received_total += len(got)
        if read_by_server is not None:
            read = read_by_server[i]
            lost += len(read) - len(got)
            assert got == read, f"client {i}: server read {len(read)} lines, {len(got)} replies"
    figure(scenario, "connections ended by FIN", ends["fin"], f"== {len(results)}")
    figure(scenario, "connections ended by RST", ends["rst"], "== 0")
    figure(scenario, "replies received", received_total)
    return ends, received_total, lost


def test_stop_under_load_in_process_answers_every_line_read_and_ends_with_fin(make_server):
    scenario = "6 graceful stop (stop())"
    shutdown_timeout = 0.1  # shorter than the clients' sending: the stop cuts them off
    read_by_server: dict[int, list[bytes]] = {}
    total_read = [0]

    def handler(conn):
        mine = read_by_server.setdefault(conn.remote_port, [])
        for line in conn:
            mine.append(line.encode())
            total_read[0] += 1
            conn.put(line)
            gevent.sleep(0.001)  # a little work per line, so the stop finds handlers mid-stream

    server = make_server(handler, shutdown_timeout=shutdown_timeout)
    socks = [client(server.address) for _ in range(N_CLIENTS)]
    ports = [s.getsockname()[1] for s in socks]
    sent = [_lines(i) for i in range(N_CLIENTS)]
    progress = [0]
    runs = [gevent.spawn(_run_client, s, sent[i], i % 2 == 0, progress)
            for i, s in enumerate(socks)]
    poll(lambda: total_read[0] >= N_CLIENTS * N_LINES // 4, "a quarter of the lines read",
         interval=0.001)
    at_stop = total_read[0]
    start = time.monotonic()
    server.stop()
    took = time.monotonic() - start
    gevent.joinall(runs, timeout=30)
    assert all(r.dead for r in runs), "a client did not finish"
    results = [r.get() for r in runs]
    by_index = [read_by_server.get(port, []) for port in ports]
    ends, received, lost = _check_replies(scenario, results, sent, by_index)
    figure(scenario, "lines read by the server at stop()", at_stop, f"of {N_CLIENTS * N_LINES}")
    figure(scenario, "lines read by the server in all", total_read[0])
    figure(scenario, "lines read but not answered", lost, "== 0")
    figure(scenario, "stop() took (s)", took, f"<= shutdown_timeout {shutdown_timeout} + 1")
    assert lost == 0
    assert ends["rst"] == 0 and ends["timeout"] == 0
    assert took <= shutdown_timeout + 1.0
    assert 0 < at_stop <= total_read[0] < N_CLIENTS * N_LINES


def test_sigterm_to_the_echo_example_under_load_loses_nothing_and_exits_in_time(
        server_process):
    scenario = "6 graceful stop (SIGTERM echo.py)"
    shutdown_timeout = 10.0  # examples/echo.py uses the Server default
    port = free_port()
    proc = server_process(argv=[sys.executable, str(EXAMPLES / "echo.py"), "--port", str(port)],
                          name="echo")
    proc.wait_listening(port)
    socks = [client(proc.address, timeout=shutdown_timeout + 10) for _ in range(N_CLIENTS)]
    sent = [_lines(i) for i in range(N_CLIENTS)]
    progress = [0]
    # Even clients half-close after their last line (they end by themselves); odd ones stay
    # open and are ended by the shutdown after shutdown_timeout.
    runs = [gevent.spawn(_run_client, s, sent[i], i % 2 == 0, progress)
            for i, s in enumerate(socks)]
    poll(lambda: progress[0] >= N_CLIENTS * N_LINES // 4, "a quarter of the replies",
         interval=0.001)
    at_signal = progress[0]
    start = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    poll(lambda: _refused(proc.address), "the listener to close after SIGTERM", timeout=5)
    refused_after = time.monotonic() - start
    rc = proc.proc.wait(timeout=shutdown_timeout + 10)
    took = time.monotonic() - start
    gevent.joinall(runs, timeout=10)
    assert all(r.dead for r in runs), "a client did not finish"
    results = [r.get() for r in runs]
    ends, received, _ = _check_replies(scenario, results, sent)
    figure(scenario, "replies received before SIGTERM", at_signal, f"of {N_CLIENTS * N_LINES}")
    figure(scenario, "exit after SIGTERM (s)", took, f"<= shutdown_timeout {shutdown_timeout} + 1")
    assert rc == 0, proc.log()
    assert "Traceback" not in proc.log(), proc.log()
    # Every client kept sending until done: the server was still serving live connections
    # during shutdown_timeout, so nothing at all is lost.
    assert received == N_CLIENTS * N_LINES
    assert ends["rst"] == 0 and ends["timeout"] == 0
    assert took <= shutdown_timeout + 1.0
    figure(scenario, "new clients refused after (s)", refused_after, "< 1")
    assert refused_after < 1.0


def _refused(address) -> bool:
    try:
        gevent.socket.create_connection(address, timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False
