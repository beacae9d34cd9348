"""Operations under a real master, with real peers: Prometheus scraping across a reload and a
kill -9, HAProxy's agent-check (weight, DRAIN), the connection log's rotation, and the admin
endpoint under abuse. The configurations are docs/operations.md's, with addresses replaced."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import haproxy_servers, need_program, poll, stop_process
from master_support import DEADLINE, ask, read_line

from greensrv.admin import CLIENT_TIMEOUT

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
SCRAPE_CONFIG = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)[0]
ALERT_RULES = re.findall(r"```yaml\n(.*?)```", DOC, flags=re.S)[1]
HAPROXY_CONFIG = re.search(r"```haproxy\n(.*?)```", DOC, flags=re.S).group(1)

#: An application with a prometheus_client counter of its own, made at import.
OPSAPP = '''\
import os

from prometheus_client import Counter

LINES = Counter("opsapp_lines", "Lines the application answered")


def handler(conn):
    for line in conn:
        LINES.inc()
        conn.put(f"{os.getpid()} {line}")
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metric(page: bytes, name: str) -> float | None:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", page.decode(), flags=re.M)
    return float(match.group(1)) if match else None


def clients(address, count: int, threads: int = 4) -> None:
    """``count`` connections, ``threads`` at a time, each one line answered."""
    def run(n: int) -> None:
        for i in range(n):
            assert ask(address, f"hello {i}").endswith(f"hello {i}")
    workers = [threading.Thread(target=run, args=(count // threads,)) for _ in range(threads)]
    for each in workers:
        each.start()
    for each in workers:
        each.join(DEADLINE)
    assert count % threads == 0


class Prometheus:
    """A real Prometheus server scraping ``target``, its storage in ``tmp_path``."""

    def __init__(self, tmp_path: Path, target: str) -> None:
        binary = need_program("prometheus", "prometheus")
        self.port = free_port()
        config = (SCRAPE_CONFIG.replace('"127.0.0.1:9100"', f'"{target}"')
                  .replace("scrape_interval: 15s",
                           "scrape_interval: 200ms\n    scrape_timeout: 150ms"))
        (tmp_path / "prometheus.yml").write_text(config)
        self.process = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll("Prometheus to be ready", self._ready, timeout=60)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail("prometheus exited at start")
        try:
            return http_get(self.port, "/-/ready")[0] == 200
        except OSError:
            return False

    def query(self, expr: str) -> float | None:
        status, body = http_get(self.port, "/api/v1/query?query=" + urllib.parse.quote(expr))
        assert status == 200, body
        result = json.loads(body)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        stop_process(self.process)


@pytest.fixture
def prometheus(tmp_path):
    started: list[Prometheus] = []

    def start(target: str) -> Prometheus:
        started.append(Prometheus(tmp_path, target))
        return started[-1]
    yield start
    for each in started:
        each.stop()


def test_the_documented_alert_rules_are_valid(tmp_path):
    promtool = need_program("promtool", "prometheus")
    (tmp_path / "rules.yml").write_text(ALERT_RULES)
    done = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_prometheus_sees_totals_that_survive_a_kill_and_a_reload(start, app_dir, prometheus):
    (app_dir / "opsapp.py").write_text(OPSAPP)
    admin = free_port()
    master = start("-w", "2", "-b", "127.0.0.1:0", "--admin-bind", f"127.0.0.1:{admin}",
                   "opsapp:handler")
    address = master.wait_ready()
    scraper = prometheus(f"127.0.0.1:{admin}")

    def accepted() -> float | None:
        return metric(http_get(admin, "/metrics")[1], "greensrv_connections_accepted_total")

    clients(address, 20)
    poll("both workers' reports of 20 connections", lambda: accepted() == 20)
    victim = min(master.workers())
    mark = master.mark()
    _kill(victim)
    master.wait_log(rf"worker {victim} was killed by SIGKILL", after=mark)
    master.wait_workers(2, exclude={victim})
    assert accepted() >= 20  # never backwards
    clients(address, 20)
    mark = master.mark()
    master.signal(signal.SIGHUP)
    master.wait_log(r"reload done", after=mark)
    clients(address, 20)

    poll("Prometheus to scrape all 60 connections",
         lambda: scraper.query("greensrv_connections_accepted_total") == 60)
    assert scraper.query("resets(greensrv_connections_accepted_total[5m])") == 0
    assert scraper.query('greensrv_connections_closed_total{reason="closed"}') == 60
    assert scraper.query("greensrv_worker_restarts_total") == 1
    assert scraper.query("greensrv_reloads_total") == 1
    assert scraper.query("greensrv_workers") == 2
    poll("the application's own counter", lambda: scraper.query("opsapp_lines_total") == 60)
    assert master.stop() == 0


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


class HAProxy:
    """haproxy in the foreground with docs/operations.md's backend, over two greensrv masters."""

    def __init__(self, tmp_path: Path, app1, agent1: int, app2, agent2: int) -> None:
        self.path = tmp_path
        self.frontend = ("127.0.0.1", free_port())
        lines = []
        for line in HAPROXY_CONFIG.splitlines():
            if "server app1" in line:
                line = line.replace("10.0.0.1:7000", "{}:{}".format(*app1))
                line = line.replace("agent-port 9101", f"agent-port {agent1}")
            elif "server app2" in line:
                line = line.replace("10.0.0.2:7000", "{}:{}".format(*app2))
                line = line.replace("agent-port 9101", f"agent-port {agent2}")
            lines.append(line.replace("agent-inter 2s", "agent-inter 100ms")
                         .replace("bind :8000", "bind {}:{}".format(*self.frontend))
                         .replace("/run/haproxy/admin.sock", str(tmp_path / "admin.sock")))
        (tmp_path / "haproxy.cfg").write_text("\n".join(lines) + "\n")
        self.process = subprocess.Popen(
            [need_program("haproxy", "haproxy"), "-db", "-f", str(tmp_path / "haproxy.cfg")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll("HAProxy to accept", self._accepting)

    def _accepting(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail("haproxy exited at start")
        try:
            socket.create_connection(self.frontend, timeout=5).close()
            return True
        except ConnectionRefusedError:
            return False

    def servers(self) -> dict[str, dict[str, str]]:
        """``app1``/``app2`` → the stats row (status, weight, ...) from the stats socket."""
        return haproxy_servers(self.path / "admin.sock", "app")

    def stop(self) -> None:
        stop_process(self.process)


def test_haproxy_agent_weight_then_drain_then_a_stop_that_loses_nothing(start, tmp_path):
    agent1, agent2 = free_port(), free_port()
    one = start("-w", "2", "-c", "2", "-b", "127.0.0.1:0", "--agent-bind",
                f"127.0.0.1:{agent1}", "--drain-delay", "6", "--graceful-timeout", "1",
                "app:handler")
    two = start("-w", "1", "-b", "127.0.0.1:0", "--agent-bind", f"127.0.0.1:{agent2}",
                "app:handler")
    first, second = one.wait_ready(), two.wait_ready()
    proxy = HAProxy(tmp_path, first, agent1, second, agent2)
    try:
        # 3 of one's 4 places taken (2 workers x concurrency 2): weight 25 % of 100.
        held = [socket.create_connection(first, timeout=10) for _ in range(3)]
        buffers = [bytearray() for _ in held]
        for sock, buffer in zip(held, buffers, strict=True):
            sock.sendall(b"hi\r\n")
            assert read_line(sock, buffer).endswith(" hi")
        poll("HAProxy to reduce app1's weight",
             lambda: proxy.servers()["app1"]["weight"] == "25")
        assert proxy.servers()["app2"]["weight"] == "100"

        one.signal(signal.SIGTERM)
        poll("HAProxy to see app1 DRAIN",
             lambda: proxy.servers()["app1"]["status"].startswith("DRAIN"))
        twos = two.workers()
        for i in range(6):  # new clients all go to app2 ...
            pid = ask(proxy.frontend, f"new {i}").split()[1]
            assert int(pid) in twos
        for sock, buffer in zip(held, buffers, strict=True):  # ... established ones are served
            sock.sendall(b"still\r\n")
            assert read_line(sock, buffer).endswith(" still")
        assert one.proc.poll() is None  # still draining
        for sock, buffer in zip(held, buffers, strict=True):
            assert sock.recv(100) == b"" and not buffer  # then a clean close, nothing unread
            sock.close()
        assert one.wait_exit() == 0
        assert "draining for 6 s" in one.log()
    finally:
        proxy.stop()


def test_usr1_after_a_logrotate_rename_writes_a_new_file_and_loses_nothing(start, tmp_path):
    log_path = tmp_path / "access.log"
    master = start("-w", "2", "-b", "127.0.0.1:0", "--access-log", str(log_path),
                   "app:handler")
    address = master.wait_ready()
    clients(address, 8)
    poll("8 lines in the log", lambda: _lines(log_path) == 8)
    log_path.rename(tmp_path / "access.log.1")
    mark = master.mark()
    master.signal(signal.SIGUSR1)
    master.wait_log(r"SIGUSR1: reopening log files", after=mark)
    for _ in range(2):
        master.wait_log(r"worker \d+ reopened", after=mark)
    clients(address, 8)
    poll("8 lines in the new file", lambda: _lines(log_path) == 8)
    assert _lines(tmp_path / "access.log.1") == 8
    assert master.proc.poll() is None
    line = log_path.read_text().splitlines()[0]
    assert re.fullmatch(r"client=127\.0\.0\.1:\d+ server=127\.0\.0\.1:\d+ id=\d+ pid=\d+ "
                        r"duration=[0-9.]+ bytes_in=\d+ bytes_out=\d+ end=closed", line), line
    assert master.stop() == 0


def _lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def test_a_thousand_abusive_admin_clients_delay_neither_readyz_nor_supervision(start):
    admin = free_port()
    master = start("-w", "1", "-b", "127.0.0.1:0", "--admin-bind", f"127.0.0.1:{admin}",
                   "app:handler")
    master.wait_ready()
    abusers = []
    try:
        for i in range(1000):
            sock = socket.create_connection(("127.0.0.1", admin), timeout=10)
            if i % 3 == 0:
                sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage")
            elif i % 3 == 1:
                sock.sendall(b"GET /metrics HTTP/1.1\r\nHo")  # and never the rest
            abusers.append(sock)
        slowest = 0.0
        for _ in range(20):
            began = time.monotonic()
            assert http_get(admin, "/readyz") == (200, b"ready\n")
            slowest = max(slowest, time.monotonic() - began)
        assert slowest < 0.1, f"/readyz took {slowest * 1000:.0f} ms under abuse"
        victim = next(iter(master.workers()))
        _kill(victim)
        master.wait_workers(1, exclude={victim}, timeout=2.0)  # replaced promptly
        # Dropped at the client timeout, and truly closed: the worker forked after they
        # connected holds no copy of their sockets.
        abusers[1].settimeout(CLIENT_TIMEOUT + 5)
        assert abusers[1].recv(100) == b""
    finally:
        for sock in abusers:
            sock.close()
    assert master.stop() == 0


def test_a_second_int_skips_the_drain_and_a_second_term_does_not(start):
    admin = free_port()
    master = start("-w", "1", "-b", "127.0.0.1:0", "--admin-bind", f"127.0.0.1:{admin}",
                   "--drain-delay", "60", "app:handler")
    address = master.wait_ready()
    assert http_get(admin, "/readyz") == (200, b"ready\n")
    master.signal(signal.SIGTERM)
    master.wait_log(r"draining for 60 s")
    status, body = http_get(admin, "/readyz")
    assert status == 503 and body.startswith(b"not ready: draining (")
    assert ask(address, "still served").endswith("still served")
    master.signal(signal.SIGTERM)
    master.wait_log(r"SIGTERM again: still draining")
    assert master.proc.poll() is None
    master.signal(signal.SIGINT)
    master.wait_log(r"second SIGINT: skipping the rest of drain_delay")
    assert master.wait_exit() == 0
