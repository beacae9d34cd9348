"""The connection log (access_log=): one line per ended connection, each end word from a real
scenario, text and JSON, the client's address behind a PROXY header."""

from __future__ import annotations

import json
import logging

import gevent
import pytest
from gevent.queue import Queue
from helpers import WAIT

import greensrv
from greensrv import ProxyHeader
from greensrv.connection_ends import END_WORDS, format_peer

FIELDS = ["client", "server", "id", "pid", "duration", "bytes_in", "bytes_out", "end"]


class Lines(logging.Handler):
    """The greensrv.access logger's lines, as they come."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: Queue = Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.queue.put(record.getMessage())

    def next(self) -> str:
        try:
            return self.queue.get(timeout=WAIT)
        except gevent.queue.Empty:
            pytest.fail("no connection-log line came")


@pytest.fixture
def access_lines():
    logger = logging.getLogger("greensrv.access")
    handler = Lines()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split(" "))


def echo(conn):
    for line in conn:
        if line == "bye":
            return
        if line == "boom":
            raise RuntimeError("boom")
        if line == "flood":  # until output_limit cuts this client, who reads nothing
            while not conn.closed:
                conn.put("x" * 10_000)
                gevent.sleep(0)
            return
        conn.put(line)


def quiet(conn, exc):
    pass


def test_peer_close_in_text_with_every_field(make_server, connect, access_lines):
    server = make_server(echo, access_log=True, client_error=quiet)
    client = connect(server.address)
    client.send(b"hello\n")
    assert client.readline() == b"hello\r\n"
    local = client.sock.getsockname()
    client.close()
    entry = fields(access_lines.next())
    assert list(entry) == FIELDS
    assert entry["client"] == format_peer(local)
    assert entry["server"] == format_peer(server.address)
    assert entry["end"] == "closed" and entry["bytes_in"] == "6" and entry["bytes_out"] == "7"
    assert entry["id"] == "1" and float(entry["duration"]) >= 0


def test_json_is_one_object_with_exactly_the_fields(make_server, connect, access_lines):
    server = make_server(echo, access_log=True, access_log_format="json")
    client = connect(server.address)
    client.send(b"bye\n")
    assert client.read_all() == b""
    entry = json.loads(access_lines.next())
    assert list(entry) == FIELDS
    assert entry["end"] == "done" and entry["id"] == 1 and entry["bytes_in"] == 4
    assert isinstance(entry["pid"], int) and isinstance(entry["duration"], float)


@pytest.mark.parametrize(("send", "options", "word"), [
    (b"boom\n", {}, "error"),
    (b"", {"idle_timeout": 0.2}, "timeout"),
    (b"flood\n", {"output_limit": 64_000, "high_mark": 32_000, "low_mark": 1000}, "slow"),
])
def test_each_end_word_from_a_real_scenario(make_server, slow_client, access_lines, send,
                                            options, word):
    server = make_server(echo, access_log=True, client_error=quiet, **options)
    sock = slow_client(server.address)
    sock.sendall(send)
    assert fields(access_lines.next())["end"] == word


def test_shed_at_capacity(make_server, connect, access_lines):
    server = make_server(echo, access_log=True, concurrency=1, shed_min_age=0,
                         client_error=quiet)
    connect(server.address)  # silent: never proven, so shed first to make room
    with gevent.Timeout(WAIT):
        while server.statistics().live_connections < 1:
            gevent.sleep(0.01)  # polling until the first client holds the only place
    waiting = connect(server.address)
    waiting.send(b"let me in\n")
    assert waiting.readline() == b"let me in\r\n"
    assert fields(access_lines.next())["end"] == "shed"


def test_a_stop_ends_live_connections_as_stopped(connect, access_lines):
    server = greensrv.Server(echo, access_log=True)
    server.start()
    client = connect(server.address)
    client.send(b"hi\n")
    assert client.readline() == b"hi\r\n"
    server.stop(timeout=0)
    assert fields(access_lines.next())["end"] == "stopped"


def test_per_ip_refusal_and_an_untrusted_proxy_peer_are_refused(make_server, connect,
                                                                access_lines):
    server = make_server(echo, access_log=True, max_connections_per_ip=1)
    first = connect(server.address)
    first.send(b"hi\n")
    assert first.readline() == b"hi\r\n"
    second = connect(server.address)
    assert second.read_all() == b""
    entry = fields(access_lines.next())
    assert entry["end"] == "refused" and entry["id"] == "-"
    proxied = make_server(echo, access_log=True, proxy_protocol="v2",
                          proxy_trusted=["192.0.2.0/24"])
    untrusted = connect(proxied.address)
    assert untrusted.read_all() == b""
    assert fields(access_lines.next())["end"] == "refused"


def test_the_client_address_behind_a_proxy_header_is_the_clients(make_server, connect,
                                                                   access_lines):
    server = make_server(echo, access_log=True, access_log_format="json", proxy_protocol="v2")
    client = connect(server.address)
    header = ProxyHeader(version=2, command="PROXY", source=("203.0.113.7", 4242),
                         destination=("198.51.100.1", 443))
    client.send(header.encode(2) + b"hi\n")
    assert client.readline() == b"hi\r\n"
    client.close()
    entry = json.loads(access_lines.next())
    assert entry["client"] == "203.0.113.7:4242" and entry["server"] == "198.51.100.1:443"


def test_every_end_word_is_known_and_unknown_formats_fail_naming_the_option():
    assert len(set(END_WORDS)) == 8
    with pytest.raises(ValueError, match="access_log_format"):
        greensrv.Server(echo, access_log=True, access_log_format="xml")
    with pytest.raises(ValueError, match="access_log_format"):
        greensrv.Server(echo, access_log_format="xml")
