"""The accept loop (``listeners.py``): a fatal listener error reaches ``error``; exhaustion
(EMFILE) is retried with backoff and never stops the server."""

from __future__ import annotations

import errno
import socket
import subprocess
import sys
import textwrap

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
from gevent.event import AsyncResult
from helpers import echo, wait_for


def test_error_callback_gets_listener_errors(make_server):
    failure = AsyncResult()
    sock = gevent.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    make_server(echo, listen=sock, error=lambda server, exc: failure.set((server, exc)))
    sock.shutdown(socket.SHUT_RDWR)  # accept() now fails with EINVAL: a fatal listener error
    server, exc = wait_for(failure, "error callback")
    assert isinstance(exc, OSError) and exc.errno == errno.EINVAL


def test_emfile_on_accept_does_not_stop_the_server(tmp_path):
    """Run in a subprocess: lower RLIMIT_NOFILE so accept fails with EMFILE, then recover."""
    script = tmp_path / "emfile.py"
    script.write_text(textwrap.dedent("""
        import os, resource
        import gevent, gevent.socket
        import greensrv

        def echo(conn):
            for line in conn:
                conn.put(line)

        def round_trip(sock, word):
            sock.sendall(word + b"\\n")
            assert sock.recv(100) == word + b"\\r\\n"

        server = greensrv.Server(echo)
        server.start()
        first = gevent.socket.create_connection(server.address, timeout=5)
        round_trip(first, b"first")
        nfds = len(os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (nfds + 3, nfds + 3))
        # Client sockets use descriptors too: these leave the server none to accept with.
        waiting = []
        for _ in range(3):
            try:
                waiting.append(gevent.socket.create_connection(server.address, timeout=5))
            except OSError:
                break
        round_trip(first, b"barrier")  # the hub has tried (and failed) to accept by now
        assert server.statistics().accept_capacity_errors > 0, server.statistics()
        round_trip(first, b"alive")  # live clients are still served
        for sock in waiting:
            sock.close()
        late = gevent.socket.create_connection(server.address, timeout=5)
        late.settimeout(5)
        round_trip(late, b"late")  # accepting resumed once descriptors were free
        errors = server.statistics().accept_capacity_errors
        assert errors < 20, f"{errors} accept errors: backoff should prevent a busy loop"
        print("OK", server.started)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "OK True"
