"""Who may come in (``admission.py``): the ``concurrency`` limit, pausing and resuming
accepting, ``set_concurrency``; a waiting client is never accepted then dropped."""

from __future__ import annotations

import pytest
from gevent.event import Event
from gevent.queue import Queue
from helpers import WAIT, echo

# -- concurrency and set_concurrency ------------------------------------------------


def test_concurrency_limit_never_lets_more_than_n_handlers_run_nor_drops_a_waiting_client(
        make_server, connect, barrier):
    limit, n_clients = 2, 5
    active = 0
    peak = 0
    entered: Queue = Queue()

    def handler(conn):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        entered.put(conn)
        try:
            for line in conn:
                conn.put(line)
        finally:
            active -= 1

    server = make_server(handler, concurrency=limit)
    clients = [connect(server.address) for _ in range(n_clients)]
    for i, client in enumerate(clients):
        client.send(b"client %d\n" % i)
    for _ in range(limit):
        entered.get(timeout=WAIT)
    barrier()
    assert entered.qsize() == 0, "a handler started past the concurrency limit"
    assert len(server.connections) == limit
    # Each waiting client was left in the backlog, not accepted and dropped: all are served,
    # in turn, as earlier ones leave.
    for i, client in enumerate(clients):
        assert client.readline() == b"client %d\r\n" % i
        client.close()
    assert peak == limit


def test_concurrency_zero_accepts_none_until_set_concurrency_raises_it(
        make_server, connect, barrier):
    connected = Event()
    server = make_server(echo, concurrency=0, client_connected=lambda conn: connected.set())
    client = connect(server.address)  # completes in the kernel backlog
    client.send(b"waiting\n")
    barrier()
    assert not connected.is_set()
    assert server.connections == []
    server.set_concurrency(1)
    assert client.readline() == b"waiting\r\n"
    assert connected.is_set()


def test_set_concurrency_zero_pauses_a_listener_already_waiting_to_accept_and_resumes(
        make_server, connect, barrier):
    server = make_server(echo)
    first = connect(server.address)
    first.send(b"one\n")
    assert first.readline() == b"one\r\n"
    server.set_concurrency(0)  # the listener is idle in accept here
    second = connect(server.address)
    second.send(b"two\n")
    barrier()
    assert len(server.connections) == 1, "accepted a client while concurrency is 0"
    first.send(b"still served\n")
    assert first.readline() == b"still served\r\n"  # live connections are not affected
    server.set_concurrency(-1)
    assert second.readline() == b"two\r\n"


def test_a_connection_counts_toward_concurrency_until_its_final_drain_ends(
        make_server, connect, barrier):
    served = []

    def handler(conn):
        served.append(conn)
        conn.put(conn.get())
        conn.shutdown()  # FIN, then the server drains until the peer closes (bounded)

    server = make_server(handler, concurrency=1)
    first = connect(server.address)
    first.send(b"one\n")
    assert first.read_all() == b"one\r\n"  # got the FIN; the server now drains
    second = connect(server.address)
    second.send(b"two\n")
    barrier()
    assert len(served) == 1, "accepted while the first connection was still draining"
    first.close()  # the drain sees EOF; the slot frees
    assert second.read_all() == b"two\r\n"
    assert len(served) == 2


def test_set_concurrency_rejects_bad_values(make_server):
    server = make_server(echo)
    with pytest.raises(ValueError, match="concurrency"):
        server.set_concurrency(-5)
    with pytest.raises(TypeError, match="concurrency"):
        server.set_concurrency(1.5)
