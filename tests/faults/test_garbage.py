"""Scenario 8: garbage input.

Random bytes, invalid UTF-8, NUL bytes, a 10 MB line, 1-byte packets, ``\\r\\n`` split across
packets, a TLS client talking to a plaintext server, and plaintext, random bytes or silence
sent to a TLS server. The servers stay up; each bad client gets a clear error through
``client_error`` (and only its own connection is closed); the well-formed oddities (NUL bytes,
1-byte packets, split ``\\r\\n``) are echoed exactly; good clients, plain and TLS, keep getting
correct echoes the whole time.

The plaintext server runs with ``record_timeout=1`` so that a TLS client, which sends a
ClientHello without a newline and then waits for an answer, is dropped in a second rather than
the default 30 s; ``handshake_timeout=1`` does the same for a silent client on the TLS server.
"""

from __future__ import annotations

import random
import socket
import ssl
import time

import gevent
import gevent.event
import gevent.socket
import gevent.ssl
import pytest
from faultkit import client, figure, percentile, read_until_eof, readline

import greensrv
from greensrv.errors import RecordTimeoutError
from greensrv.tls import server_context

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

RECORD_TIMEOUT = 1.0
HANDSHAKE_TIMEOUT = 1.0
N_GOOD = 5


def echo(conn):
    for line in conn:
        conn.put(line)


def _drain_reply(sock) -> tuple[bytes, str]:
    sock.settimeout(10)
    return read_until_eof(sock)


def test_garbage_gets_a_clear_error_and_good_clients_keep_their_echoes(make_server, certificate):
    scenario = "8 garbage"
    errors: dict[int, list[BaseException]] = {}

    def client_error(conn, exc):
        errors.setdefault(conn.remote_port, []).append(exc)

    plain = make_server(echo, record_timeout=RECORD_TIMEOUT, client_error=client_error)
    tls = make_server(echo, ssl_context=server_context(*certificate),
                      handshake_timeout=HANDSHAKE_TIMEOUT, client_error=client_error)
    client_tls = gevent.ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # cooperative, not stdlib
    client_tls.load_verify_locations(certificate[0])

    done = gevent.event.Event()
    latencies: list[float] = []
    wrong: list[str] = []

    def good(i: int, server, wrap: bool) -> int:
        sock = client(server.address)
        if wrap:
            sock = client_tls.wrap_socket(sock, server_hostname="localhost")
        buf = bytearray()
        n = 0
        try:
            while not done.is_set():
                payload = b"good %d %d \xc3\xa9" % (i, n)
                start = time.perf_counter()
                sock.sendall(payload + b"\n")
                got = readline(sock, buf)
                latencies.append(time.perf_counter() - start)
                if got != payload:
                    wrong.append(f"{payload!r} -> {got!r}")
                n += 1
                done.wait(0.01)  # pacing of the good clients' requests
        finally:
            sock.close()
        return n

    goods = [gevent.spawn(good, i, plain, False) for i in range(N_GOOD)]
    goods += [gevent.spawn(good, 100 + i, tls, True) for i in range(N_GOOD)]

    def bad(server, sender):
        """Run one bad client; return (its port, what it observed)."""
        sock = client(server.address)
        port = sock.getsockname()[1]
        try:
            return port, sender(sock)
        finally:
            sock.close()

    def random_bytes(sock):
        sock.sendall(random.Random(8).randbytes(65536))
        return _drain_reply(sock)

    def invalid_utf8(sock):
        sock.sendall(b"fine\n\xff\xfe\xfd not utf-8\nnever echoed\n")
        return _drain_reply(sock)

    def nul_bytes(sock):
        sock.sendall(b"a\x00b\x00\x00c\n")
        buf = bytearray()
        return readline(sock, buf)

    def ten_mb_line(sock):
        chunk = b"x" * 65536
        sent = 0
        try:
            while sent < 10 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\n")
        except OSError as exc:
            return sent, type(exc).__name__
        return sent, _drain_reply(sock)[1]

    def one_byte_packets(sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for byte in b"sent one byte at a time\n":
            sock.sendall(bytes((byte,)))
            gevent.sleep(0.001)  # separate packets: the load pattern under test
        return readline(sock, bytearray())

    def split_crlf(sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        replies = []
        for piece in (b"abc\r", b"\ndef\r", b"\n"):
            sock.sendall(piece)
            gevent.sleep(0.02)  # separate packets: the load pattern under test
        replies.append(readline(sock, buf))
        replies.append(readline(sock, buf))
        sock.sendall(b"end\n")
        replies.append(readline(sock, buf))
        return replies  # an empty line here would mean the \r was taken as a line

    def tls_to_plain(sock):
        wrapped = client_tls.wrap_socket(sock, server_hostname="localhost",
                                         do_handshake_on_connect=False)
        start = time.monotonic()
        try:
            wrapped.do_handshake()
        except (OSError, ssl.SSLError) as exc:
            return type(exc).__name__, time.monotonic() - start
        return "handshake succeeded?!", time.monotonic() - start

    def plain_to_tls(sock):
        sock.sendall(b"GET / HTTP/1.0\r\n\r\nhello\n")
        return _drain_reply(sock)

    def random_to_tls(sock):
        sock.sendall(random.Random(9).randbytes(4096))
        return _drain_reply(sock)

    def silent_to_tls(sock):
        start = time.monotonic()
        data, how = _drain_reply(sock)
        return data, how, time.monotonic() - start

    cases = {
        "random bytes": (plain, random_bytes),
        "invalid UTF-8": (plain, invalid_utf8),
        "NUL bytes": (plain, nul_bytes),
        "10 MB line": (plain, ten_mb_line),
        "1-byte packets": (plain, one_byte_packets),
        "split CRLF": (plain, split_crlf),
        "TLS client to plaintext": (plain, tls_to_plain),
        "plaintext to TLS": (tls, plain_to_tls),
        "random bytes to TLS": (tls, random_to_tls),
        "silent client to TLS": (tls, silent_to_tls),
    }
    runs = {name: gevent.spawn(bad, server, sender) for name, (server, sender) in cases.items()}
    try:
        gevent.joinall(list(runs.values()), timeout=30, raise_error=True)
        # Let the good clients run a little past the last bad one, then stop them.
        done.wait(0.2)
        done.set()
        gevent.joinall(goods, timeout=10, raise_error=True)
    finally:
        done.set()
        gevent.killall(list(runs.values()) + goods, timeout=5)
    served = [g.get() for g in goods]

    got = {name: run.get() for name, run in runs.items()}

    def errors_of(name):
        return errors.get(got[name][0], [])

    def one_error(name, kind, *words):
        errs = errors_of(name)
        assert len(errs) == 1, f"{name}: expected one {kind.__name__}, got {errs!r}"
        assert isinstance(errs[0], kind), f"{name}: {errs[0]!r}"
        for word in words:
            assert word in str(errs[0]), f"{name}: {word!r} not in {errs[0]}"
        figure(scenario, f"{name}: error", f"{type(errs[0]).__name__}")
        return errs[0]

    one_error("random bytes", greensrv.FilterError)
    one_error("invalid UTF-8", greensrv.FilterError)
    assert got["invalid UTF-8"][1][0] == b"fine\r\n", got["invalid UTF-8"]
    assert got["NUL bytes"][1] == b"a\x00b\x00\x00c" and not errors_of("NUL bytes")
    one_error("10 MB line", greensrv.FilterError, "max_length")
    sent_10mb = got["10 MB line"][1][0]
    figure(scenario, "10 MB line: bytes the client got to send", sent_10mb, "< 10 MiB")
    assert sent_10mb < 10 * 1024 * 1024
    assert got["1-byte packets"][1] == b"sent one byte at a time"
    assert not errors_of("1-byte packets")
    assert got["split CRLF"][1] == [b"abc", b"def", b"end"]
    assert not errors_of("split CRLF")
    # A ClientHello has no newline (usually): the plaintext server drops it at record_timeout.
    err = errors_of("TLS client to plaintext")
    assert len(err) == 1 and isinstance(err[0], (RecordTimeoutError, greensrv.FilterError)), err
    figure(scenario, "TLS client to plaintext: error", type(err[0]).__name__)
    kind, waited = got["TLS client to plaintext"][1]
    figure(scenario, "TLS client to plaintext: dropped after (s)", waited,
           f"<= record_timeout {RECORD_TIMEOUT} + 1")
    assert kind != "handshake succeeded?!" and waited <= RECORD_TIMEOUT + 1.0
    one_error("plaintext to TLS", greensrv.TLSError, "does not speak TLS")
    one_error("random bytes to TLS", greensrv.TLSError)
    one_error("silent client to TLS", greensrv.TLSError, "in time")
    data, how, waited = got["silent client to TLS"][1]
    figure(scenario, "silent TLS client dropped after (s)", waited,
           f"<= handshake_timeout {HANDSHAKE_TIMEOUT} + 1")
    assert data == b"" and how == "fin" and waited <= HANDSHAKE_TIMEOUT + 1.0

    figure(scenario, "good echoes (plain + TLS)", sum(served))
    figure(scenario, "wrong echoes", len(wrong), "== 0")
    figure(scenario, "good clients' p99 round trip (ms)", percentile(latencies, 99) * 1000)
    assert wrong == []
    assert all(n > 0 for n in served)
    bad_ports = {port for port, _ in got.values()}
    assert set(errors) <= bad_ports, "a good client got an error"
    assert plain.started and tls.started
