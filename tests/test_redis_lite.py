"""examples/redis_lite.py serves the real Redis clients: redis-py, redis-cli and redis-benchmark.

The example runs as a subprocess on a free loopback port; readiness is a successful TCP
connect, polled against a deadline. redis-cli and redis-benchmark come from Debian's
``redis-tools`` (installed by ``.ci/run``); the tests that need one skip, saying so, when it is
absent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port, need_program

import greensrv

redis = pytest.importorskip("redis", reason="the redis client is in the [test] extra")

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "redis_lite.py"
#: The directory holding the greensrv package under test, for the subprocess's PYTHONPATH.
PACKAGE_ROOT = Path(greensrv.__file__).resolve().parent.parent
#: Upper bound for anything that takes a fraction of a second on an idle machine.
DEADLINE = 20.0

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")



def need(binary: str) -> str:
    return need_program(binary, "redis-tools")


class RedisLite:
    def __init__(self, log_path: Path, command: bool = False) -> None:
        """``python examples/redis_lite.py``, or under the ``greensrv`` command if ``command``."""
        self.port = free_port()
        self.log_path = log_path
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        argv = ([sys.executable, "-m", "greensrv", f"{EXAMPLE}:server", "-b",
                 f"127.0.0.1:{self.port}"] if command
                else [sys.executable, str(EXAMPLE), "--port", str(self.port)])
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + DEADLINE
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"redis_lite exited with {self.proc.returncode}:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=DEADLINE).close()
                return
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    pytest.fail(f"redis_lite did not listen within {DEADLINE} s:\n{self.log()}")
                time.sleep(0.02)  # poll interval, not synchronisation

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"redis_lite ignored SIGTERM:\n{self.log()}")

    def cli(self, *args: str) -> str:
        result = subprocess.run([need("redis-cli"), "-p", str(self.port), *args],
                                capture_output=True, timeout=DEADLINE, text=True)
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisLite]:
    srv = RedisLite(tmp_path / "redis_lite.log")
    try:
        srv.wait_ready()
        yield srv
    finally:
        assert srv.stop() == 0, srv.log()


@pytest.fixture
def client(server: RedisLite) -> Iterator[redis.Redis]:
    # redis-py's defaults: version 8 opens with HELLO 3 and CLIENT SETINFO.
    r = redis.Redis(port=server.port, socket_timeout=DEADLINE)
    try:
        yield r
    finally:
        r.close()


def test_redis_py_commands(client):
    assert client.ping() is True
    assert client.echo("héllo") == "héllo".encode()
    assert client.set("k", b"\x00binary\r\n") is True
    assert client.get("k") == b"\x00binary\r\n"
    assert client.get("missing") is None
    assert client.incr("n") == 1
    assert client.incr("n", 41) == 42
    assert client.exists("k", "n", "missing") == 2
    assert client.mget("k", "missing", "n") == [b"\x00binary\r\n", None, b"42"]
    assert client.delete("k", "missing") == 1
    assert client.exists("k") == 0


def test_redis_py_errors(client):
    with pytest.raises(redis.ResponseError, match="unknown command 'NOPE'"):
        client.execute_command("NOPE", "x")
    client.set("text", "abc")
    with pytest.raises(redis.ResponseError, match="not an integer"):
        client.incr("text")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        client.execute_command("GET")
    assert client.ping()  # the connection survives error replies


def test_redis_py_pipeline_of_a_thousand(client):
    pipe = client.pipeline(transaction=False)  # no MULTI/EXEC in this subset
    for i in range(1000):
        pipe.set(f"key:{i}", i)
        pipe.incr("counter")
    replies = pipe.execute()
    assert replies[-1] == 1000
    assert client.mget("key:0", "key:999") == [b"0", b"999"]


def test_redis_py_defaults_speak_resp3(client):
    assert client.connection_pool.connection_kwargs.get("protocol") in (None, 3)
    hello = client.execute_command("HELLO", "3")
    assert hello[b"proto" if b"proto" in hello else "proto"] == 3
    client.set("f", "1.5")
    assert client.get("absent") is None  # "_" in RESP3
    assert client.config_get("save") == {"save": ""} or client.config_get("save") == {
        b"save": b""}


def test_redis_py_resp2(server):
    r = redis.Redis(port=server.port, protocol=2, socket_timeout=DEADLINE)
    try:
        assert r.ping() is True
        assert r.set("k", "v") and r.get("k") == b"v" and r.get("nothing") is None
    finally:
        r.close()


def test_client_id_is_hellos_id_and_names_are_per_connection(server):
    a = redis.Redis(port=server.port, socket_timeout=DEADLINE, decode_responses=True,
                    single_connection_client=True)
    b = redis.Redis(port=server.port, socket_timeout=DEADLINE, decode_responses=True,
                    single_connection_client=True)
    try:
        hello = a.execute_command("HELLO", "3")
        assert hello["server"] == "redis" and hello["proto"] == 3
        assert hello["mode"] == "standalone" and hello["role"] == "master"
        assert hello["modules"] == [] and isinstance(hello["version"], str)
        assert a.client_id() == hello["id"]
        assert isinstance(a.client_id(), int) and a.client_id() != b.client_id()
        assert a.client_getname() is None
        assert a.client_setname("alice") is True
        assert a.client_getname() == "alice" and b.client_getname() is None
        with pytest.raises(redis.ResponseError, match="cannot contain spaces"):
            a.client_setname("a b")
        assert a.client_setinfo("LIB-NAME", "mine") is True
        assert a.execute_command("SELECT", "0") is True  # redis-py maps OK to True
        with pytest.raises(redis.ResponseError, match="out of range"):
            a.execute_command("SELECT", "1")
    finally:
        a.close()
        b.close()


def test_hello_answers_like_redis(server):
    """HELLO 2 is a flat array, HELLO 3 a map; HELLO 4 is NOPROTO and changes nothing."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as s:
        f = greensrv.filters.Resp()
        s.sendall(f.encode_many([[b"HELLO", b"4"], [b"GET", b"none"], [b"HELLO", b"2"],
                                 [b"HELLO", b"3", b"SETNAME", b"x"], [b"GET", b"none"],
                                 [b"CLIENT", b"GETNAME"], [b"HELLO"], [b"QUIT"]]))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    noproto, none2, hello2, hello3, none3, name, hello, quit_ = f.feed(data)
    assert noproto == greensrv.filters.RespError("NOPROTO unsupported protocol version")
    assert none2 is None and b"-NOPROTO" in data and b"$-1\r\n" in data
    assert isinstance(hello2, list) and hello2[:6] == [b"server", b"redis", b"version",
                                                       hello2[3], b"proto", 2]
    assert list(hello3) == [b"server", b"version", b"proto", b"id", b"mode", b"role",
                            b"modules"]
    assert hello3[b"proto"] == 3 and hello3[b"id"] == hello2[7]
    assert none3 is None and b"_\r\n" in data
    assert name == b"x" and hello[b"proto"] == 3 and quit_ == "OK"


def test_redis_cli_resp3(server):
    assert server.cli("-3", "SET", "k", "v") == "OK\n"
    assert server.cli("-3", "--no-raw", "GET", "nothing") == "(nil)\n"
    out = server.cli("-3", "--no-raw", "HELLO", "3")
    assert '"proto"' in out and "(integer) 3" in out
    assert server.cli("-2", "--no-raw", "GET", "k") == '"v"\n'


def test_redis_cli(server):
    assert server.cli("SET", "greeting", "hello world") == "OK\n"
    assert server.cli("GET", "greeting") == "hello world\n"
    assert server.cli("--no-raw", "GET", "nothing") == "(nil)\n"
    assert server.cli("INCR", "visits") == "1\n"
    assert server.cli("--no-raw", "MGET", "greeting", "nothing") == '1) "hello world"\n2) (nil)\n'
    assert server.cli("PING") == "PONG\n"
    assert "unknown command" in server.cli("FROB")


def test_redis_cli_pipe_mode(server):
    """``redis-cli --pipe`` streams many commands as fast as it can write them."""
    commands = "".join(f"SET bulk:{i} {i}\r\n" for i in range(2000)).encode()
    result = subprocess.run([need("redis-cli"), "-p", str(server.port), "--pipe"],
                            input=commands, capture_output=True, timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    assert b"errors: 0, replies: 2000" in result.stdout
    assert server.cli("GET", "bulk:1999") == "1999\n"


@pytest.mark.parametrize("pipeline, resp3", [("1", False), ("16", False), ("16", True)])
def test_redis_benchmark(server, pipeline, resp3):
    result = subprocess.run(
        [need("redis-benchmark"), "-p", str(server.port), "-t", "ping,set,get,incr",
         "-n", "2000", "-c", "4", "-P", pipeline, "-q", *(["-3"] if resp3 else [])],
        capture_output=True, timeout=60, text=True)
    assert result.returncode == 0, result.stderr + server.log()
    summary = [line.rsplit("\r", 1)[-1] for line in result.stdout.splitlines()]
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"):
        assert any(line.startswith(f"{test}: ") and "requests per second" in line
                   for line in summary), result.stdout
    assert "Could not fetch server CONFIG" not in result.stderr


def send_until_closed(server: RedisLite, wire: bytes) -> bytes:
    """Send ``wire`` on a new connection; everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as s:
        s.sendall(wire)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data


def test_inline_commands_over_a_raw_socket(server):
    data = send_until_closed(server, b"PING\r\nECHO hi\nSET a 1\r\nINCR a\r\nQUIT\r\n")
    assert data == b"+PONG\r\n$2\r\nhi\r\n+OK\r\n:2\r\n+OK\r\n"


def test_protocol_error_closes_only_that_client(server, client):
    with socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE) as s:
        s.sendall(b"*1\r\n$-5\r\n")
        try:
            data = s.recv(4096)
        except ConnectionResetError:
            data = b""
        assert data == b""  # the FilterError closes this connection
    assert client.ping()  # others are unaffected


def test_dispatch_takes_any_case_and_refuses_what_is_no_command(server):
    """Names in upper, lower or mixed case; a command word that is no bulk string, a missing
    argument and an unknown name each get Redis's error; QUIT in any case closes."""
    data = send_until_closed(server, b"*3\r\n$3\r\nset\r\n$1\r\nk\r\n$1\r\nv\r\n"
                             b"*2\r\n$3\r\nGeT\r\n$1\r\nk\r\n"
                             b"*2\r\n$3\r\nGET\r\n:1\r\n"
                             b"*1\r\n$3\r\nget\r\n"
                             b"*2\r\n$4\r\nNOPE\r\n$1\r\nx\r\n"
                             b"*1\r\n$4\r\nQuit\r\n*1\r\n$4\r\nPING\r\n")
    assert data == (b"+OK\r\n$1\r\nv\r\n"
                    b"-ERR Protocol error: expected an array of bulk strings\r\n"
                    b"-ERR wrong number of arguments for 'get' command\r\n"
                    b"-ERR unknown command 'NOPE', with args beginning with: 'x'\r\n"
                    b"+OK\r\n")  # nothing after QUIT


def test_the_greensrv_command_serves_the_example(tmp_path):
    srv = RedisLite(tmp_path / "redis_lite.log", command=True)
    try:
        srv.wait_ready()
        r = redis.Redis(port=srv.port, socket_timeout=DEADLINE)
        try:
            assert r.set("k", "v") and r.get("k") == b"v" and r.incr("n") == 1
        finally:
            r.close()
    finally:
        assert srv.stop() == 0, srv.log()
