"""Where a server listens (``addresses.py``): host and port, ``listen`` in every form,
``address`` and ``addresses``; and how an address is written for people."""

from __future__ import annotations

import errno
import os
import socket

import pytest
from helpers import echo

import greensrv
from greensrv.addresses import ListenSpec, format_address, open_listening, parse_listen
from greensrv.master_sockets import MasterSockets

# -- host, port, listen and address / addresses --------------------------------------


def test_default_host_and_port_bind_loopback_on_an_os_chosen_port(make_server, connect):
    server = make_server(echo)
    host, port = server.address
    assert host == "127.0.0.1" and port > 0
    assert server.addresses == [server.address]
    client = connect(server.address)
    client.send(b"x\n")
    assert client.readline() == b"x\r\n"


def test_explicit_port_is_used(make_server):
    first = make_server(echo)
    port = first.address[1]
    other = greensrv.Server(echo, host="127.0.0.1", port=port)
    with pytest.raises(OSError) as info:
        other.start()  # the exact port was asked for, so it collides with the first server
    assert info.value.errno == errno.EADDRINUSE
    assert not other.started


def test_listen_binds_ipv4_ipv6_unix_fd_and_an_existing_socket_at_once(
        make_server, connect, tmp_path):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    path = str(tmp_path / "s.sock")
    inherited = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    inherited.bind(("127.0.0.1", 0))
    fd = inherited.detach()  # the server now owns this descriptor
    existing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    existing.bind(("127.0.0.1", 0))
    try:
        server = make_server(echo, listen=["127.0.0.1:0", "[::1]:0", f"unix:{path}",
                                           f"fd:{fd}", existing])
    except OSError as exc:  # pragma: no cover - a host without ::1
        os.close(fd)
        existing.close()
        pytest.skip(f"cannot bind: {exc}")
    addresses = server.addresses
    assert len(addresses) == 5
    assert server.address == addresses[0]
    assert addresses[0][0] == "127.0.0.1" and addresses[0][1] > 0
    assert addresses[1][0] == "::1" and len(addresses[1]) == 2 and addresses[1][1] > 0
    assert addresses[2] == path
    assert all(isinstance(a, tuple) and len(a) == 2 for a in addresses[3:])
    for i, address in enumerate(addresses):
        client = connect(address)
        client.send(b"via %d\n" % i)
        assert client.readline() == b"via %d\r\n" % i
        client.close()
    server.stop(timeout=1)
    assert not os.path.exists(path)  # the unix socket file is removed by stop()


# -- one parser, one dispatch, one formatter ----------------------------------------------------


@pytest.mark.parametrize("entry, kind, value", [
    ("127.0.0.1:80", "tcp", ("127.0.0.1", 80)), ("[::1]:7000", "tcp", ("::1", 7000)),
    (":8000", "tcp", ("", 8000)), ("unix:/run/x.sock", "unix", "/run/x.sock"),
    ("fd:3", "fd", 3), ("systemd", "systemd", None), ("systemd:web", "systemd", "web")])
def test_every_listen_form_parses_to_one_spec(entry, kind, value):
    assert parse_listen(entry) == ListenSpec(kind, value)


@pytest.mark.parametrize("address, text", [
    (("127.0.0.1", 80), "127.0.0.1:80"), (("::1", 7000, 0, 0), "[::1]:7000"),
    ("/run/x.sock", "unix:/run/x.sock"), ("unix:/run/x.sock", "unix:/run/x.sock"),
    (b"/run/x.sock", "unix:/run/x.sock"), (5, "fd:5")])
def test_an_address_is_written_as_listen_takes_it(address, text):
    assert format_address(address) == text
    if not isinstance(address, int | bytes):
        assert str(parse_listen(text)) == text


def test_the_server_and_the_master_fail_alike_naming_the_address_as_written():
    """One dispatch: the single process's start() and the master's binding raise the same
    StartupError (an OSError with the errno) whose message names the address."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        spec = ListenSpec("tcp", ("127.0.0.1", port))
        for open_it in (lambda: open_listening([spec]),
                        lambda: MasterSockets([spec], reuse_port=False)):
            with pytest.raises(greensrv.StartupError) as info:
                open_it()
            assert info.value.errno == errno.EADDRINUSE
            assert f"cannot listen on 127.0.0.1:{port}: address already in use" in str(info.value)


def test_a_failed_entry_closes_the_sockets_already_opened(tmp_path):
    path = str(tmp_path / "first.sock")
    specs = [ListenSpec("unix", path), ListenSpec("unix", str(tmp_path / "no" / "dir.sock"))]
    with pytest.raises(greensrv.StartupError, match="no/dir.sock"):
        open_listening(specs)
    assert not os.path.exists(path)  # unlinked with its socket closed


def test_repr_logs_and_status_lines_use_the_same_formatter(make_server, tmp_path, caplog):
    path = str(tmp_path / "s.sock")
    with caplog.at_level("INFO", logger="greensrv"):
        server = make_server(echo, listen=["[::1]:0", f"unix:{path}"])
    port = server.address[1]
    assert f"[::1]:{port} unix:{path}" in repr(server)
    assert any(f"listening on [::1]:{port}, unix:{path}" in r.getMessage()
               for r in caplog.records)
