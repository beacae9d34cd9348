"""The PROXY protocol behind a real HAProxy: the configuration of docs/proxy.md, run on loopback.

Each test writes its own HAProxy configuration (the documented one, with its ports and paths
replaced), starts Debian's ``haproxy`` in the foreground, waits until it accepts, and stops it
by PID. Clients bind to other loopback addresses (127.0.0.2, ...) so the server can tell them
apart from HAProxy (127.0.0.1).
"""

from __future__ import annotations

import json
import logging
import re
import socket
from pathlib import Path

import gevent
import gevent.socket
import gevent.subprocess
import pytest
from gevent.event import Event
from gevent.queue import Queue
from helpers import WAIT, free_port, need_program, read_line, wait_for

from greensrv import ProxyHeader

DOC = Path(__file__).resolve().parents[2] / "docs" / "proxy.md"
DOCUMENTED = re.search(r"```haproxy\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
V1_BACKEND = """
frontend app_v1
    bind {bind}
    default_backend greensrv_v1

backend greensrv_v1
    server app1 {server} send-proxy check inter 2s
"""



class HAProxy:
    """One haproxy process in the foreground: its frontends' addresses and its stats socket."""

    def __init__(self, tmp_path: Path, server_address, v1: bool, checks: bool) -> None:
        self.path = tmp_path
        self.frontend = ("127.0.0.1", free_port())
        self.frontend_v1 = ("127.0.0.1", free_port())
        server = "{}:{}".format(*server_address)
        config = DOCUMENTED + (V1_BACKEND if v1 else "")
        config = (config.replace("bind :8000", "bind {}:{}".format(*self.frontend))
                  .replace("127.0.0.1:9000", server)
                  .replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock"))
                  .replace("{bind}", "{}:{}".format(*self.frontend_v1))
                  .replace("{server}", server)
                  .replace("inter 2s", "inter 100ms" if checks else "inter 2s"))
        if not checks:
            config = config.replace(" check inter 2s", "")
        (tmp_path / "haproxy.cfg").write_text(config)
        self.config = config
        self.process = gevent.subprocess.Popen(
            [need_program("haproxy", "haproxy"), "-db", "-f", str(tmp_path / "haproxy.cfg")],
            stdout=gevent.subprocess.PIPE, stderr=gevent.subprocess.STDOUT)
        self._wait_accepting()

    def _wait_accepting(self) -> None:
        with gevent.Timeout(WAIT, AssertionError(f"HAProxy did not start:\n{self.config}")):
            while True:
                if self.process.poll() is not None:
                    pytest.fail(f"haproxy exited: {self.process.stdout.read().decode()}")
                try:
                    gevent.socket.create_connection(self.frontend, timeout=WAIT).close()
                    return
                except ConnectionRefusedError:
                    gevent.sleep(0.02)  # polling for a port, bounded by the Timeout above

    def connect(self, source_ip: str, v1: bool = False):
        sock = gevent.socket.socket()
        sock.settimeout(WAIT)
        sock.bind((source_ip, 0))
        sock.connect(self.frontend_v1 if v1 else self.frontend)
        return sock

    def server_status(self) -> dict[str, str]:
        """``backend/server`` → status (UP, DOWN, ...) from the stats socket."""
        sock = gevent.socket.socket(socket.AF_UNIX)
        sock.settimeout(WAIT)
        with sock:
            sock.connect(str(self.path / "admin.sock"))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        rows = [line.split(",") for line in data.decode().splitlines() if line and line[0] != "#"]
        return {f"{r[0]}/{r[1]}": r[17] for r in rows if r[1] not in ("FRONTEND", "BACKEND")}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # by PID: Popen signals its own child only
            try:
                self.process.wait(timeout=WAIT)
            except gevent.subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=WAIT)
        self.process.stdout.close()


@pytest.fixture
def haproxy(tmp_path):
    """``haproxy(server_address, v1=False, checks=False)``: a started HAProxy, stopped after."""
    started: list[HAProxy] = []

    def start(server_address, v1: bool = False, checks: bool = False) -> HAProxy:
        proxy = HAProxy(tmp_path, server_address, v1, checks)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def reporting_server(make_server, **options):
    """A server whose handler reports each proxied client (not HAProxy's own checks) and echoes."""
    seen: Queue = Queue()

    def handler(conn):
        if conn.remote_ip != "127.0.0.1":
            seen.put(dict(remote=conn.remote_address, local=conn.local_address,
                          peer=conn.socket.getpeername(), proxy=conn.proxy))
        for line in conn:
            conn.put(line)

    return make_server(handler, **options), seen


@pytest.mark.parametrize("v1", [False, True], ids=["send-proxy-v2 crc32c,unique-id", "send-proxy"])
def test_handler_sees_each_client_through_haproxy(make_server, haproxy, v1):
    server, seen = reporting_server(make_server, proxy_protocol="any")
    proxy = haproxy(server.address, v1=v1)
    for source_ip in ("127.0.0.2", "127.0.0.3"):
        with proxy.connect(source_ip, v1=v1) as client:
            client.sendall(b"hello\n")
            assert read_line(client) == b"hello\r\n"
            info = wait_for(seen, "the handler")
            assert info["remote"] == client.getsockname()  # the client's own address and port
            assert info["local"] == (proxy.frontend_v1 if v1 else proxy.frontend)
            assert info["peer"][0] == "127.0.0.1"  # the socket's peer is HAProxy
            assert info["peer"] != client.getsockname()
            assert info["proxy"].version == (1 if v1 else 2)
            if not v1:
                assert info["proxy"].unique_id  # from unique-id-format
                assert 0x03 in info["proxy"].tlvs  # a CRC32C, checked by the parser
    assert server.statistics().proxy_rejected == 0


def test_ip_blocking_and_per_ip_cap_act_on_the_client(make_server, haproxy):
    release = Event()

    def handler(conn):
        conn.put(conn.remote_ip)
        release.wait(WAIT)

    server = make_server(handler, proxy_protocol="v2", max_connections_per_ip=1,
                         client_pre_connect=lambda sock, address: (
                             None if address[0] == "127.0.0.3" else sock))
    proxy = haproxy(server.address)
    first = proxy.connect("127.0.0.2")
    assert read_line(first) == b"127.0.0.2\r\n"  # it now holds 127.0.0.2's one slot
    second = proxy.connect("127.0.0.2")
    blocked = proxy.connect("127.0.0.3")
    other = proxy.connect("127.0.0.4")
    with first, second, blocked, other:
        assert read_line(other) == b"127.0.0.4\r\n"  # HAProxy's address is not what is capped
        assert read_line(second) == b""  # over the cap for 127.0.0.2
        assert read_line(blocked) == b""  # refused by client_pre_connect
        stats = server.statistics()
        assert stats.refused_per_ip == 1 and stats.refused == 2
        release.set()


@pytest.mark.parametrize("v1", [False, True], ids=["send-proxy-v2 check", "send-proxy check"])
def test_health_checks_pass_and_are_not_logged_as_errors(make_server, haproxy, caplog, v1):
    caplog.set_level(logging.INFO, logger="greensrv")
    server, seen = reporting_server(make_server, proxy_protocol="any")
    proxy = haproxy(server.address, v1=v1, checks=True)
    name = "greensrv_v1/app1" if v1 else "greensrv/app1"
    with gevent.Timeout(WAIT, AssertionError("HAProxy's checks did not pass")):
        while server.statistics().accepted < 3 or proxy.server_status()[name] != "UP":
            gevent.sleep(0.05)  # polling HAProxy's view, bounded by the Timeout above
    stats = server.statistics()
    assert stats.proxy_rejected == 0 and stats.client_errors == 0
    noisy = [r.getMessage() for r in caplog.records if r.name == "greensrv"
             and r.levelno >= logging.INFO and "listening on" not in r.getMessage()]
    assert noisy == []
    assert seen.empty()  # checks come from HAProxy's own address


def test_direct_clients_are_refused_while_haproxy_is_served(make_server, haproxy):
    """An untrusted client's perfect header is refused; the trusted HAProxy's is honoured."""
    server, seen = reporting_server(make_server, proxy_protocol="v2",
                                    proxy_trusted=["127.0.0.1/32"])
    proxy = haproxy(server.address)
    direct = gevent.socket.socket()
    direct.settimeout(WAIT)
    direct.bind(("127.0.0.5", 0))
    with direct:
        direct.connect(server.address)
        direct.sendall(ProxyHeader(2, "PROXY", ("192.0.2.1", 1), ("192.0.2.2", 2)).encode()
                       + b"x\n")
        try:
            assert direct.recv(100) == b""
        except ConnectionResetError:
            pass
    assert server.statistics().proxy_untrusted == 1
    with proxy.connect("127.0.0.6") as client:
        client.sendall(b"y\n")
        assert read_line(client) == b"y\r\n"
        assert wait_for(seen, "the handler")["remote"] == client.getsockname()


def test_the_connection_log_names_the_client_behind_haproxy_proxy_v2(make_server, haproxy):
    """The access log's client is the one HAProxy's PROXY v2 header names, its server the
    address the client connected to."""
    lines: Queue = Queue()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.put(json.loads(record.getMessage()))

    logger = logging.getLogger("greensrv.access")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        server = make_server(lambda conn: [conn.put(line) for line in conn],
                             proxy_protocol="v2", access_log=True, access_log_format="json")
        proxy = haproxy(server.address)
        with proxy.connect("127.0.0.5") as client:
            client.sendall(b"hello\n")
            assert read_line(client) == b"hello\r\n"
            mine = f"127.0.0.5:{client.getsockname()[1]}"
        entry = wait_for(lines, "the connection-log line")
        while entry["client"].startswith("127.0.0.1:"):  # the fixture's own probe of HAProxy
            entry = wait_for(lines, "the client's connection-log line")
        assert entry["client"] == mine and entry["end"] == "closed"
        assert entry["server"] == "{}:{}".format(*proxy.frontend)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
