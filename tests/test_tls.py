"""TLS beyond ``ssl_context``: tls.server_context, client certificates, STARTTLS, clear errors.

Certificates come from the ``openssl`` CLI: a throwaway CA signs a server and a client
certificate. Clients are gevent SSL sockets, so the server keeps running while a test waits.
"""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import textwrap
import time

import gevent
import gevent.socket
import gevent.ssl
import gevent.subprocess
import pytest
from gevent.event import AsyncResult, Event
from helpers import client_context, echo, read_line, wait_for

import greensrv
from greensrv.tls import server_context, wrap_server_socket

TIMEOUT = 5.0


def tls_connect(address, context) -> ssl.SSLSocket:
    raw = gevent.socket.create_connection(address, timeout=TIMEOUT)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_server_context_refuses_protocols_older_than_tls_1_2(pki):
    context = server_context(pki["server"], pki["server_key"])
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE


def test_require_client_cert_without_a_ca_is_a_value_error(pki):
    with pytest.raises(ValueError, match="cafile"):
        server_context(pki["server"], pki["server_key"], require_client_cert=True)


def test_peer_certificate_reports_a_verified_client_certificate(make_server, pki):
    seen = AsyncResult()

    def handler(conn):
        seen.set(conn.peer_certificate)
        for line in conn:
            conn.put(line)

    context = server_context(pki["server"], pki["server_key"], cafile=pki["ca"],
                             require_client_cert=True)
    server = make_server(handler, ssl_context=context)
    sock = tls_connect(server.address, client_context(pki, with_cert=True))
    try:
        sock.sendall(b"hi\n")
        assert read_line(sock) == b"hi\r\n"
        cert = seen.get(timeout=TIMEOUT)
        subject = dict(item for rdn in cert["subject"] for item in rdn)
        assert subject["commonName"] == "client-one"
    finally:
        sock.close()


def test_a_client_without_the_required_certificate_gets_a_tls_error(make_server, pki):
    errors = AsyncResult()
    connected = Event()
    context = server_context(pki["server"], pki["server_key"], cafile=pki["ca"],
                             require_client_cert=True)
    server = make_server(lambda conn: None, ssl_context=context,
                         client_connected=lambda conn: connected.set(),
                         client_error=lambda conn, exc: errors.set(exc))
    sock = None
    try:
        # TLS 1.3 finishes the client's side of the handshake before the server has checked the
        # certificate: the refusal then shows up on the first read.
        sock = tls_connect(server.address, client_context(pki, with_cert=False))
        sock.sendall(b"hi\n")
        with pytest.raises((ssl.SSLError, ConnectionError)):
            if not sock.recv(100):
                raise ConnectionResetError("closed")
    except (ssl.SSLError, ConnectionError):
        pass
    finally:
        if sock is not None:
            sock.close()
    exc = errors.get(timeout=TIMEOUT)
    assert isinstance(exc, greensrv.TLSError)
    assert "TLS handshake with" in str(exc) and "certificate" in str(exc).lower()
    assert not connected.is_set()
    assert server.statistics().tls_failures == 1


def test_peer_certificate_is_none_on_a_plain_connection(make_server, connect):
    seen = AsyncResult()
    server = make_server(lambda conn: seen.set(conn.peer_certificate))
    connect(server.address)
    assert seen.get(timeout=TIMEOUT) is None


def starttls_handler(context, errors):
    def handler(conn):
        for line in conn:
            if line == "STARTTLS":
                conn.put("220 go ahead")
                try:
                    conn.start_tls(context)
                except greensrv.TLSError as exc:
                    errors.set(exc)
                    return
                conn.put("secured")
            else:
                conn.put(f"echo {line}")
    return handler


def test_start_tls_upgrades_a_plain_connection_mid_stream(make_server, pki):
    errors = AsyncResult()
    context = server_context(pki["server"], pki["server_key"])
    server = make_server(starttls_handler(context, errors))
    raw = gevent.socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        raw.sendall(b"plain\nSTARTTLS\n")
        assert read_line(raw) == b"echo plain\r\n"
        assert read_line(raw) == b"220 go ahead\r\n"
        tls = client_context(pki, with_cert=False).wrap_socket(raw, server_hostname="127.0.0.1")
        assert read_line(tls) == b"secured\r\n"
        tls.sendall(b"over tls\n")
        assert read_line(tls) == b"echo over tls\r\n"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        tls.close()
    finally:
        raw.close()
    assert not errors.ready()


def test_start_tls_refuses_plaintext_pipelined_after_the_command(make_server, pki):
    """Bytes sent after STARTTLS but before the handshake could be injected: refused."""
    errors = AsyncResult()
    context = server_context(pki["server"], pki["server_key"])
    server = make_server(starttls_handler(context, errors))
    raw = gevent.socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        raw.sendall(b"STARTTLS\nRCPT TO:<injected>\n")
        exc = errors.get(timeout=TIMEOUT)
        assert isinstance(exc, greensrv.TLSError)
        assert "after its STARTTLS command" in str(exc) and "19 bytes" in str(exc)
        rest = b""
        while True:
            chunk = raw.recv(100)
            if not chunk:
                break
            rest += chunk
        assert rest == b"220 go ahead\r\n"  # nothing was answered for the injected line
    finally:
        raw.close()


def test_a_plaintext_client_on_a_tls_port_gets_a_clear_error(make_server, pki):
    errors = AsyncResult()
    context = server_context(pki["server"], pki["server_key"])
    server = make_server(lambda conn: None, ssl_context=context,
                         client_error=lambda conn, exc: errors.set(exc))
    raw = gevent.socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        raw.sendall(b"HELO example.org\r\n")
        exc = errors.get(timeout=TIMEOUT)
    finally:
        raw.close()
    assert isinstance(exc, greensrv.TLSError)
    assert "does not speak TLS" in str(exc)


def test_a_silent_client_is_dropped_after_the_handshake_timeout(make_server, pki):
    errors = AsyncResult()
    context = server_context(pki["server"], pki["server_key"])
    server = make_server(lambda conn: None, ssl_context=context, handshake_timeout=0.2,
                         client_error=lambda conn, exc: errors.set(exc))
    raw = gevent.socket.create_connection(server.address, timeout=TIMEOUT)
    try:
        exc = errors.get(timeout=TIMEOUT)
        assert raw.recv(100) == b""  # closed by the server
    finally:
        raw.close()
    assert isinstance(exc, greensrv.TLSError)
    assert "no complete handshake in time" in str(exc)


def test_max_connections_per_ip_refuses_extra_clients_before_any_callback(make_server):
    connected = []
    server = make_server(lambda conn: conn.get(), max_connections_per_ip=2,
                         client_connected=lambda conn: connected.append(conn.id))
    socks = [gevent.socket.create_connection(server.address, timeout=TIMEOUT) for _ in range(3)]
    try:
        # The third is accepted and closed at once by the kernel-level refusal: EOF, no banner.
        assert socks[2].recv(100) == b""
        stats = server.statistics()
        assert stats.refused_per_ip == 1 and stats.refused == 1
        assert len(connected) <= 2
        socks[0].close()
        deadline = gevent.Timeout(TIMEOUT)
        with deadline:
            while server.statistics().live_connections > 1:
                gevent.sleep(0.01)  # poll interval
        fourth = gevent.socket.create_connection(server.address, timeout=TIMEOUT)
        socks.append(fourth)
        fourth.settimeout(0.3)
        with pytest.raises(socket.timeout):  # accepted and held: its handler waits in get()
            fourth.recv(100)
    finally:
        for s in socks:
            s.close()


# -- ssl_context, handshake timeout, TLS via client_pre_connect ---------------------------


def _server_context(certificate):
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


STDLIB_TLS_CLIENT = textwrap.dedent("""
    import socket, ssl, sys
    context = ssl.create_default_context(cafile=sys.argv[1])
    with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"hello tls\\nsecond\\n")
            data = b""
            while data.count(b"\\n") < 2:
                chunk = tls.recv(1000)
                if not chunk:
                    break
                data += chunk
            print(repr(data), tls.version())
""")


def run_stdlib_tls_client(cert, address):
    proc = gevent.subprocess.Popen([sys.executable, "-c", STDLIB_TLS_CLIENT, cert, address[0],
                                    str(address[1])], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return out


@pytest.mark.parametrize("style", ["ssl_context", "client_pre_connect"])
def test_tls_echo_with_the_stdlib_ssl_client(make_server, certificate, style):
    context = _server_context(certificate)
    if style == "ssl_context":
        server = make_server(echo, ssl_context=context)
    else:
        server = make_server(
            echo, client_pre_connect=lambda sock, address: wrap_server_socket(sock, context))
    out = run_stdlib_tls_client(certificate[0], server.address)
    assert out.startswith(repr(b"hello tls\r\nsecond\r\n")), out
    assert "TLSv1." in out


def test_tls_echo_in_process_with_cooperative_ssl(make_server, connect, certificate):
    server = make_server(echo, ssl_context=_server_context(certificate))
    client = connect(server.address)
    context = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(certificate[0])
    client.sock = context.wrap_socket(client.sock, server_hostname="localhost")
    for word in (b"one", b"two"):
        client.send(word + b"\n")
        assert client.readline() == word + b"\r\n"
    client.sock.shutdown(socket.SHUT_WR)


def test_tls_handshake_timeout_drops_a_silent_client_with_tls_error(
        make_server, connect, certificate):
    errors = AsyncResult()
    connected = []
    server = make_server(echo, ssl_context=_server_context(certificate), handshake_timeout=0.3,
                         client_error=lambda conn, exc: errors.set(exc),
                         client_connected=connected.append)
    client = connect(server.address)  # says nothing
    start = time.monotonic()
    exc = wait_for(errors, "client_error")
    assert isinstance(exc, greensrv.TLSError)
    assert time.monotonic() - start >= 0.25
    assert client.read_all() == b""
    assert connected == []


def test_plaintext_client_on_a_tls_server_gets_tls_error(make_server, connect, certificate):
    errors = AsyncResult()
    server = make_server(echo, ssl_context=_server_context(certificate),
                         client_error=lambda conn, exc: errors.set(exc))
    client = connect(server.address)
    client.send(b"GET / HTTP/1.0\r\n\r\n")
    assert isinstance(wait_for(errors, "client_error"), greensrv.TLSError)
