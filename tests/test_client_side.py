"""The client side as a new user meets it: a shutdown that closes by itself, write_eof (a
half-close that keeps reading), STARTTLS from a client, Resp commands to a real Redis,
``"host:port"`` addresses, and a Connection class that shows only the application's API."""

from __future__ import annotations

import pydoc
import socket
import subprocess
import time

import gevent
import gevent.socket
import pytest
from gevent.event import AsyncResult, Event
from helpers import WAIT, client_context, free_port, need_program, wait_for
from redis_server import redis_server  # noqa: F401 - fixture

import greensrv
from greensrv.filters import Resp, Stream
from greensrv.testing import connect, serving
from greensrv.tls import server_context


def poll_until(condition, what: str, timeout: float = WAIT) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        gevent.sleep(0.01)  # a poll interval under a deadline, not synchronisation


def echo(conn):
    for line in conn:
        conn.put(line)


# -- shutdown() closes by itself --------------------------------------------------------------
def test_a_client_shutdown_closes_by_itself_once_the_server_has_everything(no_leaks):
    """5,000 lines, shutdown(), nothing read: the server gets them all, and the client's
    connection then closes by itself (descriptor released) instead of staying 'closing'."""
    received = AsyncResult()

    def count(conn):
        received.set(sum(1 for _ in conn))

    with serving(count) as server:
        conn = connect(server, drain_timeout=0.5)
        conn.put(*[f"line {i}" for i in range(5000)])
        conn.shutdown()
        assert wait_for(received, "the server to read every line") == 5000
        poll_until(lambda: conn.closed, "the client connection to close by itself")
        assert conn.socket.fileno() == -1


def test_a_client_shutdown_closes_within_drain_timeout_when_the_server_keeps_sending(no_leaks):
    stop = Event()

    def chatty(conn):
        while not stop.is_set():
            conn.put(b"x" * 4096)
            gevent.sleep(0.001)  # a server that streams, a little at a time

    with serving(chatty, filter=Stream()) as server:
        conn = connect(server, filter=Stream(), drain_timeout=0.2)
        assert conn.get(timeout=WAIT)
        began = time.monotonic()
        conn.shutdown()
        poll_until(lambda: conn.closed, "the connection to close after drain_timeout")
        assert time.monotonic() - began < WAIT
        stop.set()


def test_a_server_side_shutdown_closes_by_itself_while_the_handler_still_runs(no_leaks):
    """The handler calls shutdown() and goes on without reading: the connection still closes
    after at most drain_timeout, before the handler returns."""
    closed_while_running = AsyncResult()
    release = Event()

    def handler(conn):
        conn.put("bye")
        conn.shutdown()
        deadline = time.monotonic() + WAIT
        while not conn.closed and time.monotonic() < deadline:
            gevent.sleep(0.01)  # the handler is busy elsewhere; poll under a deadline
        closed_while_running.set(conn.closed)
        release.wait(WAIT)

    # drain_timeout: the server's default, 1 s
    with serving(handler) as server, connect(server) as conn:
        assert conn.get(timeout=WAIT) == "bye"
        conn.put("more input nobody reads")
        conn.flush(WAIT)
        assert wait_for(closed_while_running, "the handler's report") is True
        release.set()


# -- write_eof(): half-close, input goes on ---------------------------------------------------
def test_write_eof_then_read_every_reply_and_the_connection_closes_by_itself(no_leaks):
    def slow_echo(conn):
        for line in conn:
            gevent.sleep(0.001)  # a server that takes its time per line
            conn.put(line)

    with serving(slow_echo) as server:
        conn = connect(server)
        conn.put(*[f"request {i}" for i in range(100)])
        conn.write_eof()
        assert conn.closing and not conn.closed
        conn.put("dropped: output has ended")
        assert list(conn) == [f"request {i}" for i in range(100)]
        poll_until(lambda: conn.closed, "the connection to close after the server's EOF")


def test_write_eof_on_the_server_side_keeps_reading_the_client(no_leaks):
    got = AsyncResult()

    def handler(conn):
        conn.put("banner")
        conn.write_eof()
        got.set(list(conn))

    with serving(handler) as server:
        sock = gevent.socket.create_connection(server.address, timeout=WAIT)
        with sock:
            data = b""
            while True:
                chunk = sock.recv(100)
                if not chunk:
                    break  # the server's FIN, after its banner
                data += chunk
            assert data == b"banner\r\n"
            sock.sendall(b"still\r\nlistening\r\n")
            sock.shutdown(socket.SHUT_WR)
            assert wait_for(got, "the handler's records") == ["still", "listening"]


# -- addresses as strings ---------------------------------------------------------------------
def test_connect_takes_the_string_forms_listen_takes(tmp_path, no_leaks):
    with serving(echo) as server:
        host, port = server.address
        with greensrv.connect(f"{host}:{port}", timeout=WAIT) as conn:
            conn.put("as a string")
            assert conn.get(timeout=WAIT) == "as a string"
    with (serving(echo, host="::1") as server,
          greensrv.connect(f"[::1]:{server.address[1]}", timeout=WAIT) as conn):
        conn.put("v6")
        assert conn.get(timeout=WAIT) == "v6"
    with pytest.raises(ValueError, match="'nonsense'"):
        greensrv.connect("nonsense")
    with pytest.raises(ValueError, match=r"\[::1\]:7000"):
        greensrv.connect("::1:7000")


def test_client_takes_a_string_address(no_leaks):
    with serving(echo) as server:
        host, port = server.address
        replies = AsyncResult()
        client = greensrv.Client(f"{host}:{port}", connected=lambda conn: conn.put("hi"),
                                 server_input=lambda conn, line: replies.set(line))
        with client:
            assert wait_for(replies, "the echo") == "hi"


# -- STARTTLS from the client -----------------------------------------------------------------
def starttls_server(pki):
    context = server_context(pki["server"], pki["server_key"])

    def handler(conn):
        assert conn.get() == "STARTTLS"
        conn.put("220 go ahead")
        conn.start_tls(context)
        for line in conn:
            conn.put(line.upper())

    return handler


def test_client_start_tls_against_a_greensrv_starttls_server(pki, no_leaks):
    with serving(starttls_server(pki)) as server, connect(server) as conn:
        conn.put("STARTTLS")
        assert conn.get(timeout=WAIT) == "220 go ahead"
        conn.start_tls(client_context(pki, with_cert=False), server_hostname="127.0.0.1")
        assert conn.peer_certificate["subject"] == ((("commonName", "localhost"),),)
        conn.put("secret")
        assert conn.get(timeout=WAIT) == "SECRET"


def test_client_start_tls_checks_the_host_name(pki, no_leaks):
    # reraise=False: the server's handshake fails too (the client refuses its certificate)
    with serving(starttls_server(pki), reraise=False) as server, connect(server) as conn:
        conn.put("STARTTLS")
        assert conn.get(timeout=WAIT) == "220 go ahead"
        with pytest.raises(greensrv.TLSError, match="certificate verification failed"):
            conn.start_tls(client_context(pki, with_cert=False),
                           server_hostname="wrong.example")


def test_client_start_tls_against_openssl_s_server(pki, tmp_path, no_leaks):
    openssl = need_program("openssl", "openssl")
    port = free_port()
    proc = subprocess.Popen(
        [openssl, "s_server", "-accept", f"127.0.0.1:{port}", "-cert", pki["server"],
         "-key", pki["server_key"], "-rev", "-naccept", "1"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT * 4
        while True:
            try:
                conn = greensrv.connect(f"127.0.0.1:{port}", timeout=WAIT)
                break
            except ConnectionRefusedError:
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "openssl s_server did not listen in time"
                gevent.sleep(0.05)  # poll interval, not synchronisation
        with conn:
            # The plain connection is upgraded before any byte: s_server speaks TLS at once.
            conn.start_tls(client_context(pki, with_cert=False), server_hostname="127.0.0.1")
            conn.put("hello")
            assert conn.get(timeout=WAIT) == "olleh"  # -rev: each line reversed
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


# -- Resp on a client: commands as bulk strings -----------------------------------------------
def test_resp_commands_with_str_arguments_against_a_real_redis(redis_server, no_leaks):  # noqa: F811
    with greensrv.connect(redis_server, filter=Resp(), timeout=WAIT) as conn:
        conn.put(["SET", "clé", "valeur"], ("EXPIRE", "clé", 100), ["GET", "clé"], "PING")
        assert [conn.get(timeout=WAIT) for _ in range(4)] == ["OK", 1, b"valeur",
                                                              "PONG"]


def test_a_client_told_no_more_input_hears_about_the_server(no_leaks):
    with (serving(lambda conn: None) as server, connect(server) as conn,
          pytest.raises(EOFError, match="no more input from the server")):
        conn.get(timeout=WAIT)


# -- the public class -------------------------------------------------------------------------
MAKERS_METHODS = ("attach", "finish", "queue_records", "queue_text", "send_queued",
                  "crossed_after_put", "encode_text", "outgoing", "discard", "end_output",
                  "stop_input", "switch_output_filter", "overload_progress", "shed")


def test_help_shows_the_applications_api_only():
    text = pydoc.render_doc(greensrv.Connection, renderer=pydoc.plaintext)
    for name in ("get", "put", "flush", "shutdown", "write_eof", "close", "start_tls",
                 "set_filter", "proxy", "remote_address", "data", "buffered", "closing"):
        assert name in text
    assert "client" in text.split("Methods")[0]  # the class docstring covers both sides
    for name in MAKERS_METHODS:
        assert f" {name}(" not in text, name
        assert not hasattr(greensrv.Connection, name), name


def test_iterating_a_connection_is_the_connection_itself_in_every_build(no_leaks):
    with serving(echo) as server, connect(server) as conn:
        assert iter(conn) is conn
        conn.put("a", "b")
        assert next(conn) == "a"
        assert next(iter(conn)) == "b"
        conn.write_eof()
        assert list(conn) == []
        with pytest.raises(StopIteration):
            next(conn)
