"""The accept loop (``listeners.py``): a fatal listener error reaches ``error``; exhaustion
(EMFILE) is retried with backoff and never stops the server."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import textwrap

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest
from gevent.event import AsyncResult
from helpers import echo, need_program, wait_for


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


# -- the compiled accept (_c_accept.pyx): None on an empty backlog, Python's addresses --------

def compiled_accept():
    """``_c_accept.accept``, or skip (pure build, not Linux); fails instead when the compiled
    build is expected."""
    from greensrv.listeners import _ACCEPT_FD

    if _ACCEPT_FD is None:
        if os.environ.get("GREENSRV_EXPECT_COMPILED") == "1" and sys.platform == "linux" \
                and os.environ.get("GREENSRV_PURE_PYTHON", "") in ("", "0"):
            need_program("cc", "gcc")  # no compiler: a pure install, as documented
            pytest.fail("the compiled build is expected but _c_accept is missing")
        pytest.skip("the accept4 helper runs only compiled, on Linux")
    return _ACCEPT_FD


def accepted_both_ways(listener, connect):
    """Accept one client with the helper and one with Python's socket.accept: the helper's
    descriptor, the addresses each gave, and the first client's own name."""
    accept = compiled_accept()
    clients = [connect(), connect()]
    first = clients[0].getsockname()
    fd, ours = accept(listener.fileno())
    theirs_sock, theirs = listener.accept()
    theirs_sock.close()
    for client in clients:
        client.close()
    return fd, ours, theirs, first


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"),
                                          (socket.AF_INET6, "::1")])
def test_compiled_accept_gives_pythons_addresses_and_a_non_blocking_descriptor(family, host):
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        def connect():
            return socket.create_connection((host, port), timeout=5)

        fd, ours, theirs, first = accepted_both_ways(listener, connect)
        try:
            assert type(ours) is type(theirs) and len(ours) == len(theirs)
            assert ours == first and ours[0] == theirs[0]
            assert not os.get_blocking(fd) and not os.get_inheritable(fd)
        finally:
            os.close(fd)


@pytest.mark.parametrize("client_name", [None, b"\0greensrv-accept-test"])
def test_compiled_accept_gives_pythons_unix_addresses(tmp_path, client_name):
    path = str(tmp_path / "l.sock")
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(path)
        listener.listen(8)

        def connect():
            client = socket.socket(socket.AF_UNIX)
            if client_name is not None:
                try:
                    client.bind(client_name + str(os.getpid()).encode())
                except OSError:
                    client.bind(b"")  # the abstract name is taken by the first client: autobind
            client.connect(path)
            return client

        fd, ours, theirs, first = accepted_both_ways(listener, connect)
        os.close(fd)
        assert type(ours) is type(theirs) and ours == first
        if client_name is None:
            assert ours == theirs == ""


def test_compiled_accept_returns_none_when_nobody_waits_and_raises_other_errors():
    accept = compiled_accept()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        assert accept(listener.fileno()) is None
        assert accept(listener.fileno()) is None
        with socket.socket() as unlistening, pytest.raises(OSError) as info:
            accept(unlistening.fileno())
        assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        accept(-1)
    assert info.value.errno == errno.EBADF
