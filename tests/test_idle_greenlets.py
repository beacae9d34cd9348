"""``Server(..., idle_greenlets=False)`` (``event_life.py``): a callback-style connection that
waits for input holds no greenlet; each of its events runs in a greenlet taken for it, in
order, never two at once. Real servers, real loopback clients."""

from __future__ import annotations

import gc
import logging
import socket
import subprocess
import sys

import gevent
import gevent.hub
import gevent.socket
import gevent.ssl
import gevent.threadpool
import greenlet
import pytest
from gevent.event import Event
from gevent.queue import Queue
from helpers import WAIT, client_context, read_line, small_send_buffer, wait_for

import greensrv
import greensrv.testing
from greensrv.config import ServerConfig
from greensrv.errors import ConnectionShedError
from greensrv.event_life import POOL_SIZE
from greensrv.flags import by_option
from greensrv.tls import server_context


def until(condition, what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until true, failing with ``what`` at the deadline."""
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not condition():
            gevent.sleep(0.01)  # poll interval


def echo_upper(conn, line):
    conn.put(line.upper())


def live_greenlets() -> int:
    """Greenlets that have started and not ended (the hub and gevent's own workers aside)."""
    infrastructure = (gevent.hub.Hub, gevent.threadpool._WorkerGreenlet)
    return sum(1 for g in gc.get_objects()
               if isinstance(g, greenlet.greenlet) and not isinstance(g, infrastructure)
               and g and not g.dead and g.parent is not None)


# -- the option ------------------------------------------------------------------------------

def test_with_a_handler_it_is_a_type_error_naming_the_option():
    with pytest.raises(TypeError, match="idle_greenlets is for the callback style"):
        greensrv.Server(lambda conn: None, idle_greenlets=False)


def test_the_command_names_its_flag_for_a_handler_application(tmp_path):
    (tmp_path / "handlerapp.py").write_text("def handler(conn):\n    conn.put(conn.get())\n")
    done = subprocess.run([sys.executable, "-m", "greensrv", "handlerapp:handler",
                           "--no-idle-greenlets", "--bind", "127.0.0.1:0",
                           "--app-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--no-idle-greenlets is for the callback style (client_input) only" in done.stderr


def test_it_must_be_a_bool():
    with pytest.raises(TypeError, match="idle_greenlets must be True or False"):
        greensrv.Server(client_input=echo_upper, idle_greenlets="no")


def test_the_default_is_true_and_the_command_has_a_flag():
    server = greensrv.Server(client_input=echo_upper)
    assert server.idle_greenlets is True
    assert greensrv.Server(client_input=echo_upper, idle_greenlets=False).idle_greenlets is False
    flag = by_option()["idle_greenlets"]
    assert (flag.flag, flag.switch_value) == ("--no-idle-greenlets", False)
    config = ServerConfig.from_options({"client_input": echo_upper}).replace(
        idle_greenlets=False)
    assert config.idle_greenlets is False


# -- events in order, never overlapping ------------------------------------------------------

def test_pipelined_records_keep_their_order_and_never_overlap(make_server, connect):
    overlaps: list[int] = []
    seen: dict[int, list[str]] = {}

    def client_input(conn, line):
        if conn.data.get("busy"):
            overlaps.append(conn.id)
        conn.data["busy"] = True
        seen.setdefault(conn.id, []).append(line)
        if int(line.split()[1]) % 7 == 0:
            gevent.sleep(0)  # yield mid-event: another event of this connection must not run
        conn.put(line)
        conn.data["busy"] = False

    def client_flushed(conn):
        if conn.data.get("busy"):
            overlaps.append(conn.id)

    server = make_server(client_input=client_input, client_flushed=client_flushed,
                         idle_greenlets=False)
    clients = [connect(server.address) for _ in range(4)]
    expected = [b"".join(b"c%d %d\n" % (n, i) for i in range(300)) for n in range(4)]
    for client, data in zip(clients, expected, strict=True):
        client.send(data)
    for client, data in zip(clients, expected, strict=True):
        assert client.read_exactly(len(data) + 300) == data.replace(b"\n", b"\r\n")
    assert not overlaps
    assert all(lines == [f"c{lines[0][1]} {i}" for i in range(300)] for lines in seen.values())


def test_output_callbacks_run_between_input_events_in_order(make_server, connect):
    events: Queue = Queue()

    def client_input(conn, line):
        events.put(("input", line))
        conn.put("x" * 200_000)  # above high_mark: client_high, then the drain's client_low

    server = make_server(client_input=client_input, idle_greenlets=False,
                         high_mark=100_000, low_mark=10_000,
                         client_high=lambda conn: events.put(("high",)),
                         client_low=lambda conn: events.put(("low",)),
                         client_flushed=lambda conn: events.put(("flushed",)),
                         client_pre_connect=small_send_buffer)
    client = connect(server.address)
    client.send(b"one\n")
    assert wait_for(events, "client_input") == ("input", "one")
    assert wait_for(events, "client_high") == ("high",)
    client.read_exactly(200_002)
    assert wait_for(events, "client_low") == ("low",)
    assert wait_for(events, "client_flushed") == ("flushed",)
    client.send(b"two\n")
    assert wait_for(events, "the second client_input") == ("input", "two")


# -- a blocking callback ---------------------------------------------------------------------

def test_a_blocking_callback_delays_only_its_connection(make_server, connect):
    release, blocked = Event(), Event()
    calls: list[str] = []

    def client_input(conn, line):
        calls.append(line)
        if line == "block":
            blocked.set()
            release.wait(WAIT)  # a database call, say
        conn.put(line)

    server = make_server(client_input=client_input, idle_greenlets=False)
    slow, fast = connect(server.address), connect(server.address)
    slow.send(b"block\nafter\n")
    wait_for(blocked, "the blocking callback")
    for n in range(20):
        fast.send(b"fast %d\n" % n)
        assert fast.readline() == b"fast %d\r\n" % n
    assert "after" not in calls  # its input is not read meanwhile
    release.set()
    assert slow.readline() == b"block\r\n"
    assert slow.readline() == b"after\r\n"


# -- idle connections hold no greenlet -------------------------------------------------------

@pytest.mark.parametrize("idle_greenlets", [False, True])
def test_idle_connections_hold_no_greenlet(make_server, connect, idle_greenlets):
    server = make_server(client_input=echo_upper, idle_greenlets=idle_greenlets)
    before = live_greenlets()
    clients = [connect(server.address) for _ in range(100)]
    for n, client in enumerate(clients):
        client.send(b"hello %d\n" % n)
    for n, client in enumerate(clients):
        assert client.readline() == b"HELLO %d\r\n" % n
    assert server.statistics().live_connections == 100 == len(server.connections)
    if idle_greenlets:  # the contrast: a greenlet per idle connection
        until(lambda: live_greenlets() - before >= 100, "a greenlet per connection")
    else:  # at most the pool's parked greenlets
        until(lambda: live_greenlets() - before <= POOL_SIZE, "the idle connections' greenlets "
              "to end")
    for client in clients:
        client.close()
    until(lambda: not server.connections, "the connections to end")


# -- the end: client_disconnected once, errors, timeouts --------------------------------------

def test_client_disconnected_runs_exactly_once_however_it_ends(make_server, connect):
    ended: list[int] = []
    errors: list[BaseException] = []

    def client_input(conn, line):
        if line == "fail":
            raise ValueError("callback failed")
        if line == "bye":
            conn.put("bye")
            conn.shutdown()
            return
        conn.put(line)

    server = make_server(client_input=client_input, idle_greenlets=False, idle_timeout=0.3,
                         client_disconnected=lambda conn: ended.append(conn.id),
                         client_error=lambda conn, exc: errors.append(exc))
    peer_closes, fails, says_bye, goes_idle = (connect(server.address) for _ in range(4))
    for client in (peer_closes, fails, says_bye, goes_idle):
        client.send(b"hi\n")
        assert client.readline() == b"hi\r\n"
    peer_closes.close()
    fails.send(b"fail\nnever\n")
    assert fails.read_all() == b""
    says_bye.send(b"bye\nignored\n")
    assert says_bye.read_all() == b"bye\r\n"
    assert goes_idle.read_all() == b""  # idle_timeout
    until(lambda: len(ended) == 4, "four client_disconnected")
    assert sorted(ended) == sorted(set(ended))
    assert [str(exc) for exc in errors] == ["callback failed"]
    assert server.statistics().closed_idle == 1


def booming_echo(conn, line):
    if line == "boom":
        raise RuntimeError("boom")
    conn.put(line)


def test_an_error_in_a_callback_ends_only_its_client(make_server, connect):
    errors: Queue = Queue()
    server = make_server(client_input=booming_echo, idle_greenlets=False,
                         client_error=lambda conn, exc: errors.put(exc))
    bad, good = connect(server.address), connect(server.address)
    bad.send(b"ok\nboom\nlost\n")
    assert bad.read_all() == b"ok\r\n"
    assert str(wait_for(errors, "client_error")) == "boom"
    good.send(b"still served\n")
    assert good.readline() == b"still served\r\n"


def test_without_shutdown_on_error_the_connection_goes_on(make_server, connect):
    errors: Queue = Queue()
    server = make_server(client_input=booming_echo, idle_greenlets=False,
                         client_shutdown_on_error=False,
                         client_error=lambda conn, exc: errors.put(exc))
    client = connect(server.address)
    client.send(b"boom\nafter\n")
    assert client.readline() == b"after\r\n"
    assert str(wait_for(errors, "client_error")) == "boom"


def test_a_filter_error_ends_only_its_client(make_server, connect):
    errors: Queue = Queue()
    server = make_server(client_input=echo_upper, idle_greenlets=False,
                         filter=greensrv.filters.Line(max_length=10),
                         client_error=lambda conn, exc: errors.put(exc))
    bad, good = connect(server.address), connect(server.address)
    bad.send(b"x" * 100 + b"\n")
    assert bad.read_all() == b""
    assert isinstance(wait_for(errors, "the filter's error"), greensrv.errors.FilterError)
    good.send(b"fine\n")
    assert good.readline() == b"FINE\r\n"


# -- limits and overload ---------------------------------------------------------------------

def test_concurrency_counts_connections_not_greenlets(make_server, connect):
    server = make_server(client_input=echo_upper, idle_greenlets=False, concurrency=2,
                         shedding=False)
    first, second = connect(server.address), connect(server.address)
    for client in (first, second):
        client.send(b"in\n")
        assert client.readline() == b"IN\r\n"
    third = connect(server.address)  # connects (the backlog), but is not accepted
    third.send(b"wait\n")
    reply = gevent.spawn(third.readline)
    reply.join(0.3)  # a bounded look: still waiting in the backlog
    assert not reply.ready()
    assert server.statistics().live_connections == 2
    first.close()
    assert reply.get(timeout=WAIT) == b"WAIT\r\n"


def test_an_idle_connection_is_shed_to_make_room(make_server, connect):
    errors: Queue = Queue()
    server = make_server(client_input=echo_upper, idle_greenlets=False, concurrency=1,
                         shed_min_age=0, shed_proven_idle=0.1,
                         client_error=lambda conn, exc: errors.put(exc))
    proven = connect(server.address)
    proven.send(b"first\n")
    assert proven.readline() == b"FIRST\r\n"
    waiting = connect(server.address)
    waiting.send(b"let me in\n")
    assert waiting.readline() == b"LET ME IN\r\n"
    assert proven.read_all() == b""
    assert isinstance(wait_for(errors, "the shed's client_error"), ConnectionShedError)


def test_a_dripping_record_is_cut_by_record_timeout(make_server, connect):
    errors: Queue = Queue()
    server = make_server(client_input=echo_upper, idle_greenlets=False, record_timeout=0.3,
                         record_min_rate=None, client_error=lambda conn, exc: errors.put(exc))
    client = connect(server.address)
    client.send(b"never ends")
    assert client.read_all() == b""
    assert isinstance(wait_for(errors, "the record timeout"),
                      greensrv.errors.RecordTimeoutError)


def test_backpressure_pauses_input_until_output_drains(make_server, connect):
    calls: list[str] = []

    def client_input(conn, line):
        calls.append(line)
        conn.put("y" * 100_000)

    server = make_server(client_input=client_input, idle_greenlets=False, high_mark=150_000,
                         low_mark=50_000, client_pre_connect=small_send_buffer)
    client = connect(server.address)
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.send(b"".join(b"%d\n" % n for n in range(10)))
    until(lambda: len(calls) >= 2, "the first records")
    gevent.sleep(0.2)  # a bounded look: no further record while output is above high_mark
    paused_at = len(calls)
    assert paused_at < 10
    client.read_exactly(10 * 100_002)  # reading drains it: every record is answered
    assert calls == [str(n) for n in range(10)]


def test_tls_connections_serve_without_idle_greenlets(make_server, pki):
    context = server_context(pki["server"], pki["server_key"])
    server = make_server(client_input=echo_upper, idle_greenlets=False, ssl_context=context)
    raw = gevent.socket.create_connection(server.address, timeout=WAIT)
    with client_context(pki, with_cert=False).wrap_socket(raw,
                                                          server_hostname="127.0.0.1") as sock:
        for word in (b"one", b"two"):
            sock.sendall(word + b"\n")
            assert read_line(sock) == word.upper() + b"\r\n"


# -- the graceful stop -----------------------------------------------------------------------

def test_stop_ends_idle_connections_after_answering_what_was_read(connect):
    ended: list[int] = []
    with greensrv.testing.serving(client_input=echo_upper, idle_greenlets=False,
                                  client_disconnected=lambda conn: ended.append(conn.id)
                                  ) as server:
        clients = [connect(server.address) for _ in range(5)]
        for client in clients:
            client.send(b"hi\n")
            assert client.readline() == b"HI\r\n"
        server.stop(timeout=0.2)
        assert len(ended) == 5  # client_disconnected before stop() returns
        for client in clients:
            assert client.read_all() == b""


def test_stop_waits_for_a_busy_callback_then_kills_it(connect):
    ended: list[int] = []
    entered = Event()

    def client_input(conn, line):
        entered.set()
        gevent.sleep(60)  # stuck far past the stop's grace

    with greensrv.testing.serving(client_input=client_input, idle_greenlets=False,
                                  client_disconnected=lambda conn: ended.append(conn.id),
                                  reraise=False) as server:
        client = connect(server.address)
        client.send(b"stuck\n")
        wait_for(entered, "the callback")
        stopper = gevent.spawn(server.stop, 0.1)
        stopper.join(WAIT + 5)
        assert stopper.successful()
        assert ended == [1]
        assert server.statistics().live_connections == 0
        assert client.read_all() == b""


def test_stop_from_a_callback_does_not_wait_for_itself(connect):
    stopped = Event()

    def client_input(conn, line):
        conn.server.stop(timeout=0.1)
        conn.put("after stop")

    with greensrv.testing.serving(client_input=client_input, idle_greenlets=False,
                                  client_disconnected=lambda conn: stopped.set()) as server:
        client = connect(server.address)
        client.send(b"stop\n")
        assert client.readline() == b"after stop\r\n"
        wait_for(stopped, "the connection's end")
        until(lambda: server.closed, "the server to stop")


# -- PROXY, the connection log, statistics ---------------------------------------------------

def test_the_proxy_header_is_read_before_the_connection_goes_greenlet_free(make_server,
                                                                           connect):
    server = make_server(client_input=lambda conn, line: conn.put(f"{line} {conn.remote_ip}"),
                         idle_greenlets=False, proxy_protocol="v1")
    client = connect(server.address)
    client.send(b"PROXY TCP4 192.0.2.7 192.0.2.1 40000 6379\r\nhello\n")
    assert client.readline() == b"hello 192.0.2.7\r\n"
    client.send(b"again\n")
    assert client.readline() == b"again 192.0.2.7\r\n"


@pytest.fixture
def access_lines():
    logger = logging.getLogger("greensrv.access")
    lines: Queue = Queue()
    handler = logging.Handler()
    handler.emit = lambda record: lines.put(record.getMessage())  # type: ignore[method-assign]
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.mark.parametrize(("send", "options", "word"), [
    (b"hello\n", {}, "closed"),
    (b"boom\n", {}, "error"),
    (b"", {"idle_timeout": 0.2}, "timeout"),
])
def test_the_connection_log_and_statistics_count_the_same(make_server, connect, access_lines,
                                                          send, options, word):
    server = make_server(client_input=booming_echo, idle_greenlets=False, access_log=True,
                         client_error=lambda conn, exc: None, **options)
    client = connect(server.address)
    client.send(send)
    if word == "closed":
        assert client.readline() == b"hello\r\n"
        client.close()
    else:
        assert client.read_all() == b""
    entry = dict(part.split("=", 1) for part in wait_for(access_lines, "a log line").split())
    assert entry["end"] == word and entry["bytes_in"] == str(len(send))
    assert entry["bytes_out"] == ("7" if word == "closed" else "0")
    statistics = server.statistics()
    assert (statistics.bytes_in, statistics.live_connections) == (len(send), 0)


@pytest.mark.parametrize("idle_greenlets", [True, False])
def test_client_flushed_runs_for_the_last_reply_of_a_shutdown(make_server, connect,
                                                             idle_greenlets):
    flushed = Event()

    def client_input(conn, line):
        conn.put("bye")
        conn.shutdown()

    server = make_server(client_input=client_input, idle_greenlets=idle_greenlets,
                         client_flushed=lambda conn: flushed.set())
    client = connect(server.address)
    client.send(b"quit\n")
    assert client.read_all() == b"bye\r\n"
    wait_for(flushed, "client_flushed after the shutdown's flush")
