"""examples/chat_client.py against examples/chat.py, both as subprocesses: it waits for a chat
server that is not up yet, relays lines both ways, and reconnects when the server restarts."""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port
from test_examples import DEADLINE, EXAMPLES, PACKAGE_ROOT, Client

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def start(name: str, port: int, **popen) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(PACKAGE_ROOT))
    return subprocess.Popen([sys.executable, str(EXAMPLES / f"{name}.py"), "--port", str(port)],
                            env=env, **popen)


class Output:
    """The lines a process writes, read with a deadline (never a blocking read)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.selector = selectors.DefaultSelector()
        self.selector.register(proc.stdout, selectors.EVENT_READ)
        self.buf = b""
        self.seen: list[str] = []

    def expect(self, text: str) -> str:
        """The next line containing ``text`` (earlier lines are kept in ``seen``)."""
        deadline = time.monotonic() + DEADLINE
        while True:
            while b"\n" in self.buf:
                line, self.buf = self.buf.split(b"\n", 1)
                decoded = line.decode(errors="replace")
                self.seen.append(decoded)
                if text in decoded:
                    return decoded
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                pytest.fail(f"no line with {text!r} in time; saw {self.seen}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                pytest.fail(f"output ended before {text!r}; saw {self.seen}")
            self.buf += chunk


def peer(port: int) -> tuple[Client, str]:
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline
            time.sleep(0.02)  # poll interval, not synchronisation
    client = Client(sock)
    return client, "{}:{}".format(*sock.getsockname()[:2])


def test_chat_client_waits_relays_and_reconnects(tmp_path: Path) -> None:
    port = free_port()
    client = start("chat_client", port, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                   stderr=subprocess.STDOUT)
    servers: list[subprocess.Popen] = []
    try:
        out = Output(client)
        out.expect("retrying")  # no chat server yet: connect_error, then a retry
        servers.append(start("chat", port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out.expect(f"* connected to 127.0.0.1:{port}")
        out.expect("Welcome, ")
        other, nick = peer(port)
        assert other.read_line().startswith(b"Welcome, ")
        out.expect(f"* {nick} joined")
        client.stdin.write(b"hello room\n")
        client.stdin.flush()
        assert other.read_line().endswith(b"> hello room\r\n")
        other.send(b"hi client\r\n")
        out.expect(f"<{nick}> hi client")
        other.close()

        servers[0].kill()  # the server crashes (a graceful stop would wait for the clients)...
        servers[0].wait(timeout=DEADLINE)
        out.expect("* disconnected")
        servers.append(start("chat", port, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        out.expect(f"* connected to 127.0.0.1:{port}")  # ...and is reconnected to
        out.expect("Welcome, ")
        client.stdin.close()  # end of input: the client leaves and exits
        assert client.wait(timeout=DEADLINE) == 0
    finally:
        for proc in [client, *servers]:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout:
                proc.stdout.close()
