"""A real redis-server (Debian's ``redis-server``) on a free loopback port, for the client tests."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import WAIT, free_port, need_program


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """The address of a redis-server started for this test, with nothing saved to disk."""
    binary = need_program("redis-server", "redis-server")
    port = free_port()
    log = tmp_path / "redis.log"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--logfile", str(log)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT * 4
        while True:
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited with {proc.returncode}: "
                            f"{log.read_text(errors='replace') if log.exists() else ''}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=WAIT).close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "redis-server did not listen in time"
                time.sleep(0.02)  # poll interval, not synchronisation
        yield ("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=WAIT * 2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
