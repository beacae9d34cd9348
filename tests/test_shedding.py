"""The record clock (record_min_rate, record_grace, record_start_timeout) and shedding at
capacity, over real loopback sockets. Pacing sleeps below only space a client's bytes; every
wait for an outcome is bounded and waits on the outcome itself."""

from __future__ import annotations

import socket

import gevent
import pytest
from gevent.event import Event
from gevent.queue import Queue
from helpers import WAIT, wait_for

import greensrv
from greensrv.errors import ConnectionShedError, RecordTimeoutError
from greensrv.shedding import accept_queue_length


def echo(conn):
    for line in conn:
        conn.put(line)


@pytest.mark.parametrize("options, name", [
    (dict(record_min_rate=0), "record_min_rate"),
    (dict(record_min_rate="fast"), "record_min_rate"),
    (dict(record_grace=-1), "record_grace"),
    (dict(record_start_timeout=0), "record_start_timeout"),
    (dict(shedding="yes"), "shedding"),
    (dict(shed_min_age=-0.1), "shed_min_age"),
    (dict(shed_proven_idle="long"), "shed_proven_idle"),
    (dict(defer_accept=0), "defer_accept"),
    (dict(defer_accept=1, listen="unix:/tmp/greensrv-never-bound.sock"), "defer_accept"),
])
def test_bad_overload_options_fail_at_construction_naming_the_option(options, name):
    with pytest.raises((TypeError, ValueError), match=name):
        greensrv.Server(echo, **options)


def until(condition, what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until true, failing with ``what`` at the deadline."""
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not condition():
            gevent.sleep(0.01)  # poll interval


def errors_queue() -> tuple[Queue, dict]:
    errors: Queue = Queue()
    return errors, dict(client_error=lambda conn, exc: errors.put(exc))


def test_a_dripping_client_is_cut_by_the_minimum_rate_after_the_grace(make_server, connect):
    errors, options = errors_queue()
    server = make_server(echo, record_min_rate=100, record_grace=0.3, **options)
    client = connect(server.address)
    cut = Event()

    def drip():
        try:
            while not cut.is_set():
                client.send(b"x")  # 20 bytes a second, a fifth of the minimum rate
                gevent.sleep(0.05)  # pacing
        except OSError:
            pass

    dripper = gevent.spawn(drip)
    exc = wait_for(errors, "the record clock to cut the dripping client")
    cut.set()
    dripper.join(WAIT)
    assert isinstance(exc, RecordTimeoutError)
    assert "record_min_rate=100 bytes/s" in str(exc)
    assert client.read_all() == b""
    assert server.statistics().closed_record_timeout == 1


def test_a_slow_steady_upload_above_the_rate_is_not_cut(make_server, connect):
    errors, options = errors_queue()
    server = make_server(echo, record_min_rate=100, record_grace=0.2, **options)
    client = connect(server.address)
    for _ in range(20):  # 400 bytes a second for a second: five times the grace
        client.send(b"y" * 20)
        gevent.sleep(0.05)  # pacing
    client.send(b"\n")
    assert client.readline() == b"y" * 400 + b"\r\n"
    assert errors.empty()


def test_record_timeout_still_caps_a_record_however_fast_it_arrives(make_server, connect):
    errors, options = errors_queue()
    server = make_server(echo, record_timeout=0.3, record_min_rate=10, **options)
    client = connect(server.address)
    client.send(b"z" * 1000)  # a hundred seconds' worth of rate credit, but no newline
    exc = wait_for(errors, "record_timeout to cut the unfinished record")
    assert "record_timeout=0.3 s" in str(exc)


def test_record_start_timeout_cuts_a_client_that_never_speaks(make_server, connect):
    errors, options = errors_queue()
    server = make_server(echo, record_start_timeout=0.2, **options)
    silent = connect(server.address)
    talker = connect(server.address)
    talker.send(b"hello\n")
    assert talker.readline() == b"hello\r\n"
    exc = wait_for(errors, "record_start_timeout to cut the silent client")
    assert isinstance(exc, RecordTimeoutError)
    assert "record_start_timeout=0.2 s" in str(exc)
    assert silent.read_all() == b""


def test_at_capacity_a_silent_connection_makes_room_and_a_proven_one_stays(make_server,
                                                                             connect):
    errors, options = errors_queue()
    server = make_server(echo, concurrency=2, shed_min_age=0, **options)
    proven = connect(server.address)
    proven.send(b"first\n")
    assert proven.readline() == b"first\r\n"  # now idle between records, waiting for input
    silent = connect(server.address)
    until(lambda: server.statistics().live_connections == 2, "the silent client's accept")
    waiting = connect(server.address)  # the server is full: this one waits in the backlog
    waiting.send(b"let me in\n")
    assert waiting.readline() == b"let me in\r\n"
    assert silent.read_all() == b""  # shed
    exc = wait_for(errors, "the shed connection's client_error")
    assert isinstance(exc, ConnectionShedError)
    assert exc.reason == "idle" and exc.stalled_for > 0
    assert str(exc).startswith("shed at capacity") and "sent nothing" in str(exc)
    proven.send(b"still here\n")  # idle longer than the silent one, but proven: kept
    assert proven.readline() == b"still here\r\n"
    assert server.statistics().closed_shed == 1


def test_never_more_are_shed_than_clients_wait(make_server, connect, barrier):
    errors, options = errors_queue()
    server = make_server(echo, concurrency=3, shed_min_age=0, **options)
    silent = [connect(server.address) for _ in range(3)]  # all qualify at once
    until(lambda: server.statistics().live_connections == 3, "the silent clients' accept")
    waiting = connect(server.address)
    waiting.send(b"let me in\n")
    assert waiting.readline() == b"let me in\r\n"
    barrier()  # the hub has run full loop iterations since: a second shed would have happened
    assert server.statistics().closed_shed == 1
    assert server.statistics().live_connections == 3  # two silent ones kept, and the new one
    assert isinstance(wait_for(errors, "the shed connection's client_error"),
                      ConnectionShedError)
    assert errors.empty()
    assert silent[0].read_all() == b""  # the oldest silent one went
    for n, client in enumerate(silent[1:]):  # the others are still served
        client.send(b"still here %d\n" % n)
        assert client.readline() == b"still here %d\r\n" % n


def test_a_proven_connection_idle_past_shed_proven_idle_makes_room(make_server, connect):
    errors, options = errors_queue()
    server = make_server(echo, concurrency=1, shed_min_age=0, shed_proven_idle=0.2, **options)
    proven = connect(server.address)
    proven.send(b"first\n")
    assert proven.readline() == b"first\r\n"
    waiting = connect(server.address)  # waits until the proven one has been idle 0.2 s
    waiting.send(b"let me in\n")
    assert waiting.readline() == b"let me in\r\n"
    assert proven.read_all() == b""
    exc = wait_for(errors, "the shed connection's client_error")
    assert exc.reason == "idle proven" and exc.stalled_for >= 0.2
    assert "idle between records for more than 0.2 s" in str(exc)


def test_a_connection_busy_in_its_handler_is_never_shed(make_server, connect):
    release, busy = Event(), Event()
    shed: list[BaseException] = []

    def handler(conn):
        for line in conn:
            if line == "work":
                busy.set()
                release.wait(WAIT)  # doing work, not waiting for input
            conn.put(line)

    server = make_server(handler, concurrency=1, shed_min_age=0,
                         client_error=lambda conn, exc: shed.append(exc))
    worker = connect(server.address)
    worker.send(b"work\n")
    wait_for(busy, "the handler to start its work")
    waiting = connect(server.address)
    waiting.send(b"hello\n")
    served = gevent.spawn(waiting.readline)
    served.join(0.3)  # a bounded look: the waiting client is not served by shedding the worker
    assert not served.ready() and not shed and server.statistics().closed_shed == 0
    release.set()
    # Its work done, the worker waits for input like any idle client and may now be shed to
    # make room (a race with the close below): either way its reply was sent first.
    assert worker.readline() == b"work\r\n"
    worker.close()
    assert served.get(timeout=WAIT) == b"hello\r\n"


@pytest.mark.parametrize("options", [dict(shedding=False, concurrency=1), dict(concurrency=-1)])
def test_shedding_off_or_no_concurrency_never_closes_an_idle_client(make_server, connect,
                                                                     options):
    errors, callbacks = errors_queue()
    server = make_server(echo, shed_min_age=0, **callbacks, **options)
    idle = connect(server.address)
    idle.send(b"hi\n")
    assert idle.readline() == b"hi\r\n"
    other = connect(server.address)
    other.send(b"there\n")
    answer = gevent.spawn(other.readline)
    answer.join(0.3)  # a bounded look: unlimited serves it, a full server without shedding not
    assert answer.ready() == (options["concurrency"] < 0)
    assert errors.empty() and server.statistics().closed_shed == 0
    idle.close()
    assert answer.get(timeout=WAIT) == b"there\r\n"


def test_accept_queue_length_counts_clients_waiting_on_a_listening_socket(no_leaks):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    clients = [socket.create_connection(listener.getsockname(), timeout=WAIT) for _ in range(3)]
    try:
        assert accept_queue_length(listener) == 3
        listener.accept()[0].close()
        assert accept_queue_length(listener) == 2
    finally:
        for sock in clients:
            sock.close()
        listener.close()


def test_shedding_works_on_a_unix_listener_one_client_per_readiness(make_server, connect,
                                                                      tmp_path):
    errors, options = errors_queue()
    path = str(tmp_path / "shed.sock")
    server = make_server(echo, listen=f"unix:{path}", concurrency=1, shed_min_age=0,
                         shed_proven_idle=0, **options)
    idle = connect(path)
    idle.send(b"one\n")
    assert idle.readline() == b"one\r\n"
    waiting = connect(path)
    waiting.send(b"two\n")
    assert waiting.readline() == b"two\r\n"
    assert isinstance(wait_for(errors, "the idle client to be shed"), ConnectionShedError)
    assert server.statistics().closed_shed == 1


def test_a_connection_still_waiting_for_its_proxy_header_is_never_shed(make_server, connect):
    """It is not yet among the server's connections (proxy_timeout bounds it instead): at
    capacity the idle proxied connection is shed, and the silent one is served afterwards."""
    errors, options = errors_queue()
    server = make_server(echo, concurrency=2, shed_min_age=0, shed_proven_idle=0,
                         proxy_protocol="v1", **options)
    header = b"PROXY TCP4 192.0.2.1 192.0.2.2 1111 2222\r\n"
    # The silent one is accepted first: were it a candidate, it would be the oldest idle one.
    silent = connect(server.address)  # holds a slot, still waiting for its PROXY header
    idle = connect(server.address)
    idle.send(header + b"first\n")
    assert idle.readline() == b"first\r\n"  # now idle, waiting for input
    waiting = connect(server.address)  # the server is full: this one waits in the backlog
    waiting.send(header + b"let me in\n")
    assert waiting.readline() == b"let me in\r\n"
    assert idle.read_all() == b""  # shed
    assert isinstance(wait_for(errors, "the shed connection's client_error"),
                      ConnectionShedError)
    silent.send(header + b"late\n")
    assert silent.readline() == b"late\r\n"
    assert server.statistics().closed_shed == 1


def test_shedding_starts_when_set_concurrency_gives_an_unlimited_server_a_limit(make_server,
                                                                                 connect):
    errors, options = errors_queue()
    # concurrency=-1: nothing to shed
    server = make_server(echo, shed_min_age=0, shed_proven_idle=0, **options)
    idle = connect(server.address)
    idle.send(b"first\n")
    assert idle.readline() == b"first\r\n"
    server.set_concurrency(1)
    waiting = connect(server.address)
    waiting.send(b"let me in\n")
    assert waiting.readline() == b"let me in\r\n"
    assert idle.read_all() == b""  # shed
    assert isinstance(wait_for(errors, "the shed connection's client_error"),
                      ConnectionShedError)
