"""greensrv.Client and greensrv.Backoff: POE::Component::Client::TCP's callbacks, each called the
documented number of times, and reconnection with backoff to a server that starts late or
restarts, against real greensrv servers on loopback."""

from __future__ import annotations

import random
import socket
from collections import Counter

import gevent.queue
import pytest
from gevent.queue import Queue
from helpers import WAIT, free_port, wait_for

import greensrv
from greensrv import Backoff, Client
from greensrv.testing import serving

#: Delays short enough for a test, without jitter so the sequence is known.
QUICK = Backoff(initial=0.02, maximum=0.1, factor=2, jitter=0)


def greeter(conn):
    conn.put("hello")
    for line in conn:
        conn.put(line.upper())


class Recorder:
    """Callbacks that count their calls and queue what they see."""

    def __init__(self):
        self.calls = Counter()
        self.events = Queue()

    def __call__(self, name):
        def callback(*args):
            self.calls[name] += 1
            self.events.put((name, args))
        return callback

    def options(self):
        return dict(connected=self("connected"), disconnected=self("disconnected"),
                    connect_error=self("connect_error"), server_error=self("server_error"),
                    server_input=self("server_input"))

    def next(self, name):
        """The arguments of the next event called ``name`` (skipping others)."""
        while True:
            got, args = wait_for(self.events, f"the {name} callback")
            if got == name:
                return args


class TestBackoff:
    def test_without_jitter_delays_grow_exactly_by_factor_up_to_maximum(self):
        backoff = Backoff(initial=1.0, maximum=10.0, factor=2, jitter=0)
        delays = backoff.delays()
        assert [next(delays) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
        again = iter(backoff)  # each run of failures starts over
        assert [next(again) for _ in range(3)] == [1.0, 2.0, 4.0]
        assert [backoff(n) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 10.0]

    def test_documented_defaults(self):
        b = Backoff()
        assert (b.initial, b.maximum, b.factor) == (1.0, 60.0, 1.5)
        assert 0 < b.jitter < 1 and b.reset_after > 0

    def test_jitter_stays_within_its_fraction(self):
        b = Backoff(initial=10.0, maximum=10.0, jitter=0.2)
        rng = random.Random(7)
        samples = [b.delay(3, rng) for _ in range(500)]
        assert all(8.0 <= d <= 12.0 for d in samples) and len(set(samples)) > 400

    @pytest.mark.parametrize("options, name", [
        ({"initial": -1}, "initial"), ({"maximum": 0.5}, "maximum"), ({"factor": 0.5}, "factor"),
        ({"jitter": 1}, "jitter"), ({"jitter": -0.1}, "jitter"), ({"initial": "1"}, "initial")])
    def test_bad_values_name_the_option(self, options, name):
        with pytest.raises((TypeError, ValueError), match=name):
            Backoff(**options)


class TestConstruction:
    def test_exactly_one_of_handler_and_server_input(self):
        with pytest.raises(TypeError, match="exactly one of handler and server_input"):
            Client(("127.0.0.1", 1))
        with pytest.raises(TypeError, match="exactly one"):
            Client(("127.0.0.1", 1), handler=print, server_input=print)

    def test_retry_must_be_a_backoff(self):
        with pytest.raises(TypeError, match="retry must be a greensrv.Backoff"):
            Client(("127.0.0.1", 1), handler=print, retry=5)

    def test_limits_are_checked_at_construction(self):
        with pytest.raises(ValueError, match="high_mark"):
            Client(("127.0.0.1", 1), handler=print, high_mark=0)


def test_callbacks_once_each_and_retry_none_ends_after_the_first_disconnect(no_leaks):
    rec = Recorder()
    with serving(greeter) as server:
        client = Client(server.address, client_args=("arg",), **rec.options()).start()
        conn, arg = rec.next("connected")
        assert arg == "arg" and client.wait_connected(WAIT) is conn
        assert rec.next("server_input")[1] == "hello"
        conn.put("ping")
        assert rec.next("server_input")[1] == "PING"
    # The server stopped: the connection ends, and retry=None ends the client.
    assert rec.next("disconnected") == (conn,)
    assert client.join(WAIT) and client.connection is None
    assert rec.calls == {"connected": 1, "disconnected": 1, "server_input": 2}


def test_retry_none_and_a_refused_connect_ends_with_one_connect_error(no_leaks):
    rec = Recorder()
    address = ("127.0.0.1", free_port())
    client = Client(address, **rec.options()).start()
    failed, exc = rec.next("connect_error")
    assert failed is client and isinstance(exc, ConnectionRefusedError)
    assert f"127.0.0.1:{address[1]}" in str(exc)
    assert client.join(WAIT)
    with pytest.raises(ConnectionError, match="ended without a connection"):
        client.wait_connected(WAIT)
    assert rec.calls == {"connect_error": 1}


def test_reconnects_with_backoff_to_a_server_that_starts_late(no_leaks):
    rec = Recorder()
    port = free_port()
    client = Client(("127.0.0.1", port), retry=QUICK, **rec.options()).start()
    try:
        rec.next("connect_error")
        rec.next("connect_error")  # it keeps trying
        with serving(greeter, port=port):
            conn = client.wait_connected(WAIT)
            assert rec.next("server_input")[1] == "hello"
            assert conn is client.connection
            client.stop()
            assert client.join(WAIT)
    finally:
        client.stop()
    assert client.connection is None
    assert rec.calls["connected"] == rec.calls["disconnected"] == 1
    assert rec.calls["connect_error"] >= 2


def test_reconnects_to_a_server_that_restarts(no_leaks):
    rec = Recorder()
    with serving(greeter) as server:
        port = server.address[1]
        client = Client(server.address, retry=QUICK, **rec.options()).start()
        first = client.wait_connected(WAIT)
        rec.next("server_input")
    assert rec.next("disconnected") == (first,)
    try:
        with serving(greeter, port=port):
            second, = rec.next("connected")
            assert second is not first and rec.next("server_input")[1] == "hello"
            client.stop()
            assert client.join(WAIT)
    finally:
        client.stop()
    assert rec.calls["connected"] == 2 and rec.calls["disconnected"] == 2


def test_reconnect_and_connect_replace_the_connection_calling_disconnected_once(no_leaks):
    rec = Recorder()
    with serving(greeter) as one, serving(greeter) as two:
        client = Client(one.address, **rec.options()).start()  # retry=None: no automatic retry
        first, = rec.next("connected")
        client.reconnect()
        assert rec.next("disconnected") == (first,)
        second, = rec.next("connected")
        assert second.remote_address == one.address
        client.connect(two.address)
        assert rec.next("disconnected") == (second,)
        third, = rec.next("connected")
        assert third.remote_address == two.address and client.address == two.address
        client.stop()
        assert client.join(WAIT) and client.connection is None
    assert rec.calls["connected"] == rec.calls["disconnected"] == 3


def test_a_handler_client_and_server_error(no_leaks):
    errors = Queue()

    def handler(conn):
        assert conn.get(timeout=WAIT) == "hello"
        raise RuntimeError("handler broke")

    with serving(greeter) as server:
        client = Client(server.address, handler=handler,
                        server_error=lambda conn, exc: errors.put(exc)).start()
        exc = wait_for(errors, "server_error")
        assert isinstance(exc, RuntimeError) and str(exc) == "handler broke"
        assert client.join(WAIT)


def test_stop_sends_queued_output_and_the_client_context_manager(no_leaks):
    got = Queue()

    def collector(conn):
        for line in conn:
            got.put(line)

    with serving(collector) as server:
        with Client(server.address, handler=lambda conn: conn.get()) as client:
            conn = client.wait_connected(WAIT)
            conn.put("last words")
        assert client.connection is None and client.join(0)
        assert wait_for(got, "the line put before stop()") == "last words"


@pytest.mark.parametrize("reset_after, reconnects_at_once", [(0.0, True), (60.0, False)])
def test_a_connection_that_lasted_resets_the_backoff(reset_after, reconnects_at_once, no_leaks):
    """The delays 0.01 s, then 10 s. A failed attempt uses the first; the server then appears,
    and is restarted once the connection ends. Reset (it lasted reset_after), the next delay
    is 0.01 s again; not reset, it is 10 s."""
    port = free_port()
    servers = []
    connected = Queue()

    def start_server(*args):
        server = greensrv.Server(greeter, host="127.0.0.1", port=port)
        server.start()
        servers.append(server)

    retry = Backoff(initial=0.01, maximum=30.0, factor=1000, jitter=0, reset_after=reset_after)
    client = Client(("127.0.0.1", port), handler=lambda conn: conn.get(), retry=retry,
                    connect_error=start_server, disconnected=start_server,
                    connected=connected.put).start()
    try:
        wait_for(connected, "the first connection")
        servers[0].stop(timeout=0)
        if reconnects_at_once:
            wait_for(connected, "the reconnection after a reset")
        else:
            with pytest.raises(gevent.queue.Empty):
                connected.get(timeout=0.5)  # 10 s away: not within half a second
    finally:
        client.stop()
        assert client.join(WAIT)
        for server in servers:
            server.stop(timeout=0)


def test_stop_abandons_a_connect_in_progress(no_leaks):
    """A server whose backlog is full never completes the handshake: stop() still ends the
    client at once, and closes the half-open socket."""
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        fillers = []
        try:
            # Fill the accept queue so the next connect hangs in SYN-SENT.
            for _ in range(8):
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(full.getsockname())
                fillers.append(s)
            rec = Recorder()
            client = Client(full.getsockname(), **rec.options()).start()
            with pytest.raises(TimeoutError):
                client.wait_connected(0.2)  # the attempt is stuck in the handshake
            client.stop()
            assert client.join(WAIT)
            assert client.connection is None and rec.calls["connected"] == 0
        finally:
            for s in fillers:
                s.close()


def test_server_flushed_and_pre_connect(no_leaks):
    """pre_connect sees the socket after the connect and may replace it (or give up with
    None, which is a connect_error); server_flushed follows each complete write."""
    flushed = Queue()
    seen = Queue()
    errors = Queue()
    attempts = []

    def pre_connect(sock, address):
        attempts.append(address)
        seen.put(address)
        return sock if len(attempts) == 1 else None  # the second attempt is given up

    def handler(conn):
        conn.put("x")
        for _ in conn:
            pass

    with serving(greeter) as server:
        client = Client(server.address, handler=handler,
                        pre_connect=pre_connect, server_flushed=flushed.put,
                        connect_error=lambda client, exc: errors.put(exc)).start()
        conn = client.wait_connected(WAIT)
        assert wait_for(seen, "pre_connect") == server.address
        assert wait_for(flushed, "server_flushed") is conn
        client.reconnect()
        exc = wait_for(errors, "the given-up attempt")
        assert isinstance(exc, ConnectionAbortedError) and "pre_connect" in str(exc)
        assert client.join(WAIT)  # retry=None: a failed attempt ends the client
