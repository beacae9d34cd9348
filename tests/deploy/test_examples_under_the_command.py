"""Every server example has a module-level ``server``, so ``greensrv examples/NAME.py:server``
runs it under a master; each is started that way here and answers as its docstring says."""

from __future__ import annotations

import socket
import ssl
import sys
import threading
from pathlib import Path

import pytest
from master_support import DEADLINE, READ_TIMEOUT
from redis_server import redis_server  # noqa: F401 - fixture

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX processes")

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLIENTS = {"chat_client", "redis_client"}  # not servers

#: name -> (bytes to send, bytes the reply must contain)
PROBES = {
    "block_ip": (b"hi\r\n", b"Hello 127.0.0.1\r\nhi\r\n"),
    "chargen": (b"", b"!\"#$%&"),
    "chat": (b"", b"Welcome, 127.0.0.1:"),
    "chat_cluster": (b"", b"Welcome, 127.0.0.1:"),
    "delayed_start": (b"four\r\n", b"ready\r\n4\r\n"),
    "echo": (b"hello\r\n", b"hello\r\n"),
    "echo_lowercase": (b"HeLLo\r\n", b"hello\r\n"),
    "echo_socket": (b"raw bytes", b"raw bytes"),
    "redis_lite": (b"PING\r\n", b"+PONG\r\n"),
    "rot13": (b"hello\r\n", b"uryyb\r\n"),
    "tcp_proxy": (b"through\r\n", b"upstream: through\r\n"),
    "tls_echo": (b"secret\r\n", b"secret\r\n"),
}


def test_every_server_example_is_probed_here():
    servers = {p.stem for p in EXAMPLES.glob("*.py")} - CLIENTS
    assert servers == set(PROBES)


def exchange(sock, send: bytes, want: bytes) -> bytes:
    sock.settimeout(READ_TIMEOUT)
    if send:
        sock.sendall(send)
    data = b""
    while want not in data:
        chunk = sock.recv(4096)
        assert chunk, f"EOF before {want!r}; got {data!r}"
        data += chunk
    return data


@pytest.fixture
def upstream():
    """A line server the tcp_proxy example forwards to: it answers 'upstream: LINE'."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            with sock:
                line = sock.makefile("rb").readline()
                sock.sendall(b"upstream: " + line)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()
    listener.close()


@pytest.mark.parametrize("name", sorted(PROBES))
def test_the_command_runs_each_examples_server(name, start, app_dir, upstream, request):
    args = [f"{EXAMPLES / name}.py:server", "-b", "127.0.0.1:0"]
    env = {}
    if name == "chat_cluster":
        env["REDIS_URL"] = "redis://{}:{}/0".format(*request.getfixturevalue("redis_server"))
    if name == "tcp_proxy":
        env["TCP_PROXY_UPSTREAMS"] = f"{upstream[0]}:{upstream[1]}"
    if name == "tls_echo":
        from helpers import self_signed_certificate

        cert, key = self_signed_certificate(app_dir)
        args += ["--certfile", str(cert), "--keyfile", str(key)]
    master = start(*args, **env)
    address = master.address()
    master.wait_log(r"master \d+ ready", timeout=DEADLINE)
    send, want = PROBES[name]
    with socket.create_connection(address, timeout=READ_TIMEOUT) as raw:
        if name == "tls_echo":
            context = ssl.create_default_context(cafile=str(cert))
            with context.wrap_socket(raw, server_hostname="localhost") as tls:
                exchange(tls, send, want)
        else:
            exchange(raw, send, want)
    assert master.stop() == 0
