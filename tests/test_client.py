"""greensrv.connect and greensrv.testing: a client Connection to a real greensrv server on
loopback, with the same records, filters and lifecycle as the server's; TLS with host name
checks; unix sockets; errors that name the address."""

from __future__ import annotations

import ssl

import gevent
import pytest
from gevent.event import AsyncResult, Event
from helpers import WAIT, client_context, free_port, wait_for

import greensrv
from greensrv.filters import Line, Resp
from greensrv.testing import connect, serving
from greensrv.tls import server_context


def upper_echo(conn):
    for line in conn:
        conn.put(line.upper())



def test_leaving_a_with_block_writes_what_was_put_before_closing(no_leaks):
    """A put() just before the block ends is not lost to the close (it would be: put() only
    queues, and close() drops what is queued)."""
    received = AsyncResult()

    def collect(conn):
        received.set(list(conn))

    with serving(collect) as server:
        with connect(server) as conn:
            conn.put(*[f"line {i}" for i in range(1000)])
        assert conn.closed
        assert received.get(timeout=WAIT) == [f"line {i}" for i in range(1000)]


def test_an_exception_in_a_with_block_closes_at_once(no_leaks):
    with serving(upper_echo) as server:
        with pytest.raises(RuntimeError), connect(server) as conn:
            conn.put("never mind")
            raise RuntimeError("boom")
        assert conn.closed and conn.buffered == 0


def test_a_client_connection_reads_like_a_handler(no_leaks):
    with serving(upper_echo) as server, connect(server) as conn:
        assert isinstance(conn, greensrv.Connection)
        conn.put("hello", "world")
        assert conn.get(timeout=WAIT) == "HELLO"
        assert conn.get(timeout=WAIT) == "WORLD"
        conn.flush(WAIT)
        assert conn.remote_address == server.address
        assert conn.local_address[0] == "127.0.0.1"
        conn.data["seen"] = 2  # POE's HEAP, as on the server
        with pytest.raises(TimeoutError):
            conn.get(timeout=0.05)
    assert conn.closed
    conn.put("after close")  # discarded quietly, as on the server


def test_set_filter_mid_stream_and_shutdown_reaches_eof(no_leaks):
    def switcher(conn):
        assert conn.get() == "resp please"
        conn.set_filter(Resp())
        while True:
            try:
                record = conn.get()
            except EOFError:
                return
            conn.put([b"got", record])

    with serving(switcher) as server:
        conn = connect(server)
        conn.put("resp please")
        conn.set_filter(Resp())
        conn.put([1, 2], b"x")  # on a client, Resp sends commands: arrays of bulk strings
        assert [conn.get(timeout=WAIT), conn.get(timeout=WAIT)] == [[b"got", [b"1", b"2"]],
                                                                  [b"got", [b"x"]]]
        conn.shutdown()  # FIN after the queued output: the server's loop ends, then its side
        with pytest.raises(EOFError):
            conn.get(timeout=WAIT)
        conn.close()


def test_the_server_sees_the_client_close(no_leaks):
    ended = Event()

    def handler(conn):
        for _ in conn:
            pass
        ended.set()

    with serving(handler) as server:
        with connect(server) as conn:
            conn.put("one")
            conn.flush(WAIT)
        wait_for(ended, "the server's handler to see EOF")


def test_backpressure_on_the_client_side(no_leaks):
    """A server that does not read: the client's put() never blocks, its buffer fills past
    high_mark and flush() times out, nothing is lost once the server reads."""
    go = Event()
    total = AsyncResult()

    def slow_reader(conn):
        go.wait()
        total.set(sum(len(chunk) for chunk in conn))

    with serving(slow_reader, filter=greensrv.filters.Stream()) as server:
        conn = connect(server, filter=greensrv.filters.Stream(), high_mark=64 * 1024,
                       low_mark=16 * 1024)
        block = b"x" * 65536
        for _ in range(100):  # 6.4 MB: below the default output_limit
            conn.put(block)
        assert conn.buffered > 64 * 1024
        with pytest.raises(TimeoutError):
            conn.flush(0.05)
        go.set()
        conn.flush(WAIT * 4)
        conn.shutdown()
        assert wait_for(total, "the server to read everything", WAIT * 4) == 100 * 65536
        conn.close()


def test_resp_round_trip_through_a_client(no_leaks):
    def redisish(conn):
        for command in conn:
            conn.put([b"echo", *command])

    with serving(redisish, filter=Resp()) as server, connect(server, filter=Resp()) as conn:
        conn.put(*([b"PING", b"%d" % i] for i in range(100)))
        assert [conn.get(timeout=WAIT) for _ in range(100)] == [
            [b"echo", b"PING", b"%d" % i] for i in range(100)]


def test_unix_socket(tmp_path, no_leaks):
    path = str(tmp_path / "s.sock")
    with serving(upper_echo, listen=[f"unix:{path}"], host=None, port=None) as server:
        assert server.address == path
        with greensrv.connect(f"unix:{path}", timeout=WAIT) as conn:
            conn.put("via unix")
            assert conn.get(timeout=WAIT) == "VIA UNIX"
            assert conn.remote_ip is None


def test_source_address(no_leaks):
    seen = AsyncResult()
    with (serving(lambda conn: seen.set(conn.remote_ip)) as server,
          connect(server, source_address=("127.0.0.2", 0))):
        assert wait_for(seen, "the server's handler") == "127.0.0.2"


class TestErrorsNameTheAddress:
    def test_refused(self):
        port = free_port()
        with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{port}"):
            greensrv.connect(("127.0.0.1", port), timeout=WAIT)

    def test_unix_path_missing(self, tmp_path):
        path = tmp_path / "nobody"
        with pytest.raises(FileNotFoundError, match=str(path)):
            greensrv.connect(f"unix:{path}", timeout=WAIT)

    def test_timeout_bounds_the_tls_handshake(self, no_leaks):
        """A server that never answers the TLS hello: connect gives up at ``timeout``."""
        release = Event()
        with serving(lambda conn: release.wait(WAIT), filter=greensrv.filters.Stream()) as server:
            port = server.address[1]
            context = ssl.create_default_context()
            with pytest.raises(TimeoutError, match=f"127.0.0.1:{port}.*timed out"):
                greensrv.connect(server.address, ssl_context=context, timeout=0.2)
            release.set()

    @pytest.mark.parametrize("address, what", [
        (42, "address must be"),
        ("127.0.0.1", "cannot parse"), (("127.0.0.1", 0), "port must be 1-65535"),
        ("unix:", "no path")])
    def test_bad_address(self, address, what):
        with pytest.raises((TypeError, ValueError), match=what):
            greensrv.connect(address)

    def test_bad_options(self):
        with pytest.raises(TypeError, match="unknown option.*bogus"):
            greensrv.connect(("127.0.0.1", 1), bogus=1)
        with pytest.raises(ValueError, match="low_mark"):
            greensrv.connect(("127.0.0.1", 1), high_mark=10, low_mark=10)
        with pytest.raises(TypeError, match="input_filter and output_filter together"):
            greensrv.connect(("127.0.0.1", 1), input_filter=Line())


class TestTLS:
    @pytest.fixture
    def tls_server(self, pki):
        context = server_context(pki["server"], pki["server_key"])
        with serving(upper_echo, ssl_context=context) as server:
            yield server

    def test_the_right_name_passes(self, tls_server, pki, no_leaks):
        # The certificate is for IP 127.0.0.1, the host connected to: checked by default.
        with connect(tls_server, ssl_context=client_context(pki, with_cert=False)) as conn:
            conn.put("secret")
            assert conn.get(timeout=WAIT) == "SECRET"
            assert conn.socket.version() in ("TLSv1.2", "TLSv1.3")

    def test_a_wrong_name_fails_clearly(self, tls_server, pki):
        context = client_context(pki, with_cert=False)
        with pytest.raises(greensrv.TLSError) as info:
            connect(tls_server, ssl_context=context, server_hostname="example.com")
        message = str(info.value)
        assert f"127.0.0.1:{tls_server.address[1]}" in message
        assert "certificate verification failed" in message and "example.com" in message

    def test_an_unknown_ca_fails_clearly(self, tls_server):
        with pytest.raises(greensrv.TLSError, match="certificate verification failed"):
            connect(tls_server, ssl_context=ssl.create_default_context())


def test_proxy_header_is_sent_first(no_leaks):
    """Anything with ``encode(version)`` (a greensrv.proxy.ProxyHeader once that module
    exists) is written before any record."""
    first = AsyncResult()

    class Header:
        version = 1

        def encode(self, version):
            return b"PROXY TCP4 192.0.2.1 127.0.0.1 5555 80\r\n"

    with (serving(lambda conn: first.set(conn.get()), filter=Line()) as server,
          connect(server, proxy_header=Header()) as conn):
        conn.put("after")
        assert wait_for(first, "the first line") == "PROXY TCP4 192.0.2.1 127.0.0.1 5555 80"


def test_proxy_header_with_greensrv_proxy(no_leaks):
    proxy = pytest.importorskip("greensrv.proxy", reason="greensrv.proxy (issue 11) not merged")
    seen = AsyncResult()
    header = proxy.ProxyHeader(version=2, command="PROXY", source=("192.0.2.7", 4444),
                               destination=("127.0.0.1", 80))
    with (serving(lambda conn: seen.set(conn.remote_ip), proxy_protocol="v2") as server,
          connect(server, proxy_header=header)):
        assert wait_for(seen, "the server's handler") == "192.0.2.7"


def test_a_connection_is_a_context_manager_on_the_server_side_too(no_leaks):
    done = Event()

    def handler(conn):
        with conn:
            conn.put("bye")
            conn.flush()
        done.set()

    with serving(handler) as server, connect(server) as conn:
        assert conn.get(timeout=WAIT) == "bye"
        wait_for(done, "the handler's with block")
        with pytest.raises(EOFError):
            conn.get(timeout=WAIT)


def test_many_clients_in_parallel_greenlets(no_leaks):
    def one(i):
        with connect(server) as conn:
            conn.put(f"client {i}")
            return conn.get(timeout=WAIT)

    with serving(upper_echo) as server:
        jobs = [gevent.spawn(one, i) for i in range(50)]
        gevent.joinall(jobs, timeout=WAIT * 2, raise_error=True)
        assert sorted(j.value for j in jobs) == sorted(f"CLIENT {i}" for i in range(50))
