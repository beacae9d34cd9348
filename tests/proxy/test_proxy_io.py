"""The PROXY protocol in the server, with the header written by the test's own client.

The tests behind a real HAProxy are in test_haproxy.py; these cover what HAProxy never sends:
untrusted peers, malformed and half-sent headers, LOCAL, drips, TLS after the header.
"""

from __future__ import annotations

import logging
import socket

import gevent
import gevent.socket
import pytest
from gevent.event import Event
from gevent.queue import Queue
from helpers import WAIT, client_context, need_program, wait_for

from greensrv import Server
from greensrv.proxy import PP2_TYPE_UNIQUE_ID, ProxyHeader
from greensrv.proxy_io import proxy_settings
from greensrv.tls import server_context

CLIENT = ("203.0.113.7", 51234)
SERVICE = ("198.51.100.1", 443)
V1 = ProxyHeader(1, "PROXY", CLIENT, SERVICE)
V2 = ProxyHeader(2, "PROXY", CLIENT, SERVICE, {PP2_TYPE_UNIQUE_ID: b"req-1"})


@pytest.fixture(autouse=True)
def greensrv_info_logged(caplog):
    """Refusals are logged at INFO: capture from there."""
    caplog.set_level(logging.INFO, logger="greensrv")


def until(condition, what: str, timeout: float = WAIT) -> None:
    """Poll ``condition`` until true, failing with ``what`` at the deadline."""
    with gevent.Timeout(timeout, AssertionError(f"timed out waiting for {what}")):
        while not condition():
            gevent.sleep(0.01)


def seen_by_handler(make_server, **options):
    """A server whose handler reports what it sees of each client, then echoes lines."""
    seen: Queue = Queue()

    def handler(conn):
        seen.put(dict(remote_ip=conn.remote_ip, remote_port=conn.remote_port,
                      remote_address=conn.remote_address, local_address=conn.local_address,
                      peer=conn.socket.getpeername(), proxy=conn.proxy))
        for line in conn:
            conn.put(line)

    options.setdefault("client_error", lambda conn, exc: None)
    return make_server(handler, **options), seen


def assert_closed_without_reply(client):
    """The server closed (FIN or reset) without writing a byte."""
    try:
        data = client.read_all()
    except ConnectionResetError:
        data = b""
    assert data == b""


def greensrv_records(caplog, level=logging.INFO):
    return [r for r in caplog.records if r.name == "greensrv" and r.levelno >= level
            and "listening on" not in r.getMessage() and "stop" not in r.getMessage()]


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_handler_sees_the_client_from_the_header(make_server, connect, header):
    server, seen = seen_by_handler(make_server, proxy_protocol="any")
    client = connect(server.address)
    client.send(header.encode() + b"hello\n")  # header and payload in one segment, as HAProxy
    assert client.readline() == b"hello\r\n"
    info = wait_for(seen, "the handler")
    assert (info["remote_ip"], info["remote_port"]) == CLIENT
    assert info["remote_address"] == CLIENT
    assert info["local_address"] == SERVICE
    assert info["peer"] == client.sock.getsockname()  # the socket's own peer is the proxy
    assert info["proxy"] == header
    assert server.statistics().proxy_rejected == 0


def test_without_proxy_protocol_a_header_is_ordinary_input(make_server, connect):
    server, seen = seen_by_handler(make_server)
    client = connect(server.address)
    client.send(V1.encode())
    assert client.readline() == V1.encode()
    info = wait_for(seen, "the handler")
    assert info["proxy"] is None
    assert info["remote_address"] == client.sock.getsockname()


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_untrusted_peer_is_refused_without_reading(make_server, connect, caplog, header):
    server, seen = seen_by_handler(make_server, proxy_protocol="any",
                                   proxy_trusted=["192.0.2.0/24", "2001:db8::/32"])
    client = connect(server.address)
    client.send(header.encode() + b"hello\n")
    assert_closed_without_reply(client)
    stats = server.statistics()
    assert (stats.proxy_rejected, stats.proxy_untrusted) == (1, 1)
    assert seen.empty()
    [record] = greensrv_records(caplog)
    peer = "{}:{}".format(*client.sock.getsockname())
    assert peer in record.getMessage() and "proxy_trusted" in record.getMessage()


def test_malformed_header_is_closed_at_once_and_logged(make_server, connect, caplog):
    server, seen = seen_by_handler(make_server, proxy_protocol="v1", proxy_timeout=60)
    client = connect(server.address, timeout=WAIT)  # far below proxy_timeout
    client.send(b"PROXY TCP4 10.0.0.01 10.0.0.2 1 2\r\nhello\n")
    assert_closed_without_reply(client)
    assert server.statistics().proxy_rejected == 1
    assert server.statistics().proxy_timeouts == 0
    [record] = greensrv_records(caplog)
    assert "leading zero" in record.getMessage()
    assert f"127.0.0.1:{client.sock.getsockname()[1]}" in record.getMessage()
    assert seen.empty()


@pytest.mark.parametrize("protocol, header", [("v2", V1), ("v1", V2)])
def test_wrong_version_is_refused(make_server, connect, caplog, protocol, header):
    server, seen = seen_by_handler(make_server, proxy_protocol=protocol)
    client = connect(server.address)
    client.send(header.encode() + b"hello\n")
    assert_closed_without_reply(client)
    assert server.statistics().proxy_rejected == 1
    assert "is accepted" in greensrv_records(caplog)[0].getMessage()


def test_no_header_at_all_is_refused(make_server, connect):
    server, seen = seen_by_handler(make_server, proxy_protocol="any")
    client = connect(server.address)
    client.send(b"hello\n")
    assert_closed_without_reply(client)
    assert server.statistics().proxy_rejected == 1


def test_half_sent_header_is_closed_at_proxy_timeout(make_server, connect, caplog):
    server, seen = seen_by_handler(make_server, proxy_protocol="any", proxy_timeout=0.3)
    client = connect(server.address)
    client.send(V2.encode()[:20])
    assert_closed_without_reply(client)
    stats = server.statistics()
    assert (stats.proxy_rejected, stats.proxy_timeouts) == (1, 1)
    assert "proxy_timeout=0.3" in greensrv_records(caplog)[0].getMessage()
    assert seen.empty()


def test_header_closed_early_is_refused(make_server, connect):
    server, seen = seen_by_handler(make_server, proxy_protocol="any")
    client = connect(server.address)
    client.send(b"PROXY TCP4 10.0.0.1")
    client.half_close()
    assert_closed_without_reply(client)
    assert server.statistics().proxy_rejected == 1


@pytest.mark.parametrize("header", [V1, V2], ids=["v1", "v2"])
def test_dripped_header_then_payload(make_server, connect, header):
    server, seen = seen_by_handler(make_server, proxy_protocol="any")
    client = connect(server.address)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for byte in header.encode():
        client.send(bytes([byte]))
    client.send(b"after\n")
    assert client.readline() == b"after\r\n"
    assert wait_for(seen, "the handler")["remote_address"] == CLIENT


def test_local_health_check_keeps_real_addresses_quietly(make_server, connect, caplog):
    caplog.set_level(logging.DEBUG, logger="greensrv")
    server, seen = seen_by_handler(make_server, proxy_protocol="v2")
    client = connect(server.address)
    client.send(ProxyHeader(2, "LOCAL").encode() + b"ping\n")
    assert client.readline() == b"ping\r\n"
    info = wait_for(seen, "the handler")
    assert info["remote_address"] == client.sock.getsockname()
    assert info["local_address"] == server.address
    assert info["proxy"].command == "LOCAL"
    assert server.statistics().proxy_rejected == 0
    assert not greensrv_records(caplog)
    assert any("LOCAL" in r.getMessage() for r in greensrv_records(caplog, logging.DEBUG))


def test_client_pre_connect_and_per_ip_cap_use_the_client_address(make_server, connect):
    addresses: Queue = Queue()
    release = Event()

    def pre_connect(sock, address):
        addresses.put(address)
        return None if address[0] == "203.0.113.66" else sock

    def handler(conn):
        conn.put(conn.remote_ip)
        release.wait(WAIT)

    server = make_server(handler, proxy_protocol="v2", client_pre_connect=pre_connect,
                         max_connections_per_ip=1)

    def through_proxy(ip):
        client = connect(server.address)
        client.send(ProxyHeader(2, "PROXY", (ip, 1000), SERVICE).encode())
        return client

    first = through_proxy("203.0.113.5")
    assert first.readline() == b"203.0.113.5\r\n"
    assert wait_for(addresses, "client_pre_connect") == ("203.0.113.5", 1000)
    assert_closed_without_reply(through_proxy("203.0.113.5"))  # over the cap for that client
    assert server.statistics().refused_per_ip == 1
    other = through_proxy("203.0.113.6")  # same proxy address, another client: served
    assert other.readline() == b"203.0.113.6\r\n"
    assert_closed_without_reply(through_proxy("203.0.113.66"))  # blocked by client_pre_connect
    assert wait_for(addresses, "client_pre_connect") == ("203.0.113.6", 1000)
    assert wait_for(addresses, "client_pre_connect") == ("203.0.113.66", 1000)
    release.set()
    assert first.read_all() == b"" and other.read_all() == b""
    until(lambda: server.statistics().live_connections == 0, "both connections to end")
    again = through_proxy("203.0.113.5")  # the cap was released with the first connection
    assert again.readline() == b"203.0.113.5\r\n"


def test_unix_socket_peers_are_trusted(make_server, tmp_path):
    server, seen = seen_by_handler(make_server, proxy_protocol="v1",
                                   listen=f"unix:{tmp_path / 's'}")
    sock = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT)
    with sock:
        sock.connect(str(tmp_path / "s"))
        sock.sendall(V1.encode() + b"x\n")
        assert sock.recv(100) == b"x\r\n"
    assert wait_for(seen, "the handler")["remote_address"] == CLIENT


def test_proxy_then_tls_on_the_same_connection(make_server, pki):
    need_program("openssl", "openssl")
    def handler(conn):
        conn.put(f"{conn.remote_ip}:{conn.remote_port} {conn.proxy.unique_id.decode()}")

    server = make_server(handler, proxy_protocol="v2",
                         ssl_context=server_context(pki["server"], pki["server_key"]))
    raw = gevent.socket.create_connection(server.address, timeout=WAIT)
    raw.sendall(V2.encode())  # then the ClientHello, on the same connection
    with client_context(pki, with_cert=False).wrap_socket(
            raw, server_hostname="127.0.0.1") as tls:
        assert tls.recv(100) == b"203.0.113.7:51234 req-1\r\n"


@pytest.mark.parametrize("options, error, message", [
    (dict(proxy_protocol="v3"), ValueError, "proxy_protocol must be 'v1', 'v2', 'any' or None"),
    (dict(proxy_protocol=True), ValueError, "proxy_protocol must be"),
    (dict(proxy_protocol="v2", proxy_trusted=["10.0.0.0/33"]), ValueError,
     "proxy_trusted: '10.0.0.0/33' is not an IPv4 or IPv6 address or network"),
    (dict(proxy_protocol="v2", proxy_trusted=["haproxy.local"]), ValueError, "proxy_trusted"),
    (dict(proxy_protocol="v2", proxy_trusted=5), TypeError, "proxy_trusted must be"),
    (dict(proxy_protocol="v2", proxy_timeout=0), ValueError, "proxy_timeout must be positive"),
    (dict(proxy_protocol="v2", proxy_timeout="5"), TypeError, "proxy_timeout must be a number"),
])
def test_bad_options_fail_at_construction(options, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        Server(lambda conn: None, **options)


def test_trusted_accepts_addresses_networks_ipv6_and_one_string():
    settings = proxy_settings("any", ["10.1.2.3", "192.168.0.0/16", "fd00::/8"], 1)
    assert settings.trusts(("10.1.2.3", 1)) and not settings.trusts(("10.1.2.4", 1))
    assert settings.trusts(("192.168.7.7", 1)) and settings.trusts(("fd12::1", 1, 0, 0))
    assert settings.trusts(("::ffff:10.1.2.3", 1, 0, 0))  # IPv4-mapped on a dual-stack socket
    assert not settings.trusts(("127.0.0.1", 1))
    assert proxy_settings("v1", "10.0.0.0/8", 1).trusts(("10.9.9.9", 1))
    default = Server(lambda conn: None, proxy_protocol="v2").config.proxy
    assert default.trusts(("127.0.0.5", 1)) and default.trusts(("::1", 1, 0, 0))
    assert not default.trusts(("10.0.0.1", 1))


def test_pool_slot_is_held_only_until_proxy_timeout(make_server, connect):
    """A silent connection does not hold a concurrency slot past proxy_timeout."""
    server, seen = seen_by_handler(make_server, proxy_protocol="any", proxy_timeout=0.2,
                                   concurrency=1)
    silent = connect(server.address)
    later = connect(server.address)
    later.send(V1.encode() + b"x\n")
    assert later.readline() == b"x\r\n"  # served once the silent one timed out
    assert_closed_without_reply(silent)
