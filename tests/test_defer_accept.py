"""defer_accept: TCP_DEFER_ACCEPT on the listening TCP sockets, over real loopback sockets.

A silent client is held by the kernel, never accepted, while clients that speak are served;
the option is checked at construction and refused by name where it cannot apply.
"""

from __future__ import annotations

import socket
import sys

import pytest

import greensrv
from greensrv.cli import parser, server_options
from greensrv.command_settings import resolve

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="TCP_DEFER_ACCEPT is Linux's")


def echo(conn):
    for line in conn:
        conn.put(line)


def test_a_silent_client_is_never_accepted_while_talkers_are_served(make_server, connect):
    server = make_server(echo, defer_accept=5)
    silent = connect(server.address)  # connected first: without the option, accepted first
    for n in range(3):
        talker = connect(server.address)
        talker.send(b"hello %d\n" % n)
        assert talker.readline() == b"hello %d\r\n" % n
    assert server.statistics().accepted == 3  # the talkers only
    silent.send(b"late\n")  # its first bytes: the kernel hands it over now
    assert silent.readline() == b"late\r\n"
    assert server.statistics().accepted == 4


def test_the_listening_socket_carries_the_option_rounded_up_to_whole_seconds(make_server):
    server = make_server(echo, defer_accept=0.5)
    [sock] = server._listening_sockets()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) >= 1
    plain = make_server(echo)
    [sock] = plain._listening_sockets()
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT) == 0  # off by default


def test_a_unix_listen_entry_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="defer_accept.*unix socket"):
        greensrv.Server(echo, listen=["127.0.0.1:0", f"unix:{tmp_path}/s.sock"],
                        defer_accept=3)


def test_an_inherited_unix_socket_is_refused_by_name_at_start(tmp_path, no_leaks):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "inherited.sock"))
    server = greensrv.Server(echo, listen=[sock], defer_accept=3)
    with pytest.raises(ValueError, match="defer_accept.*unix socket"):
        server.start()
    sock.close()  # start() took it over and closed it (no_leaks checks): nothing left to do


def test_the_command_line_flags_set_the_options():
    args = parser().parse_args(["app:handler", "--defer-accept", "3", "--shed-proven-idle", "9"])
    options = server_options(resolve(args))
    assert (options["defer_accept"], options["shed_proven_idle"]) == (3.0, 9.0)
    assert "defer_accept" not in server_options(resolve(parser().parse_args(["app:handler"])))
