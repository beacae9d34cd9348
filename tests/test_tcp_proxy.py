"""examples/tcp_proxy.py as a subprocess between greensrv clients and upstream servers in this
process: round robin skipping a dead upstream, half-close, an upstream dying mid-stream, the
PROXY v2 header, and 100 MB both ways through it with its memory bounded while a reader stalls.

Clients and upstreams here are gevent-based (greensrv.testing), so they run together in this
process while a test waits; the proxy is a separate process, as a user would run it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import struct
import time
from collections.abc import Callable

import gevent
import pytest
from gevent.event import AsyncResult, Event
from helpers import WAIT, free_port, wait_for
from test_examples import Example, run_example  # noqa: F401 - fixture

import greensrv
from greensrv.filters import Line, Stream
from greensrv.testing import connect, serving

MB = 1024 * 1024


def named(name: str) -> Callable[[greensrv.Connection], None]:
    """An upstream that says its name, then echoes lines."""
    def handler(conn: greensrv.Connection) -> None:
        conn.put(name)
        for line in conn:
            conn.put(line)
    return handler


def echo_with_backpressure(conn: greensrv.Connection) -> None:
    for chunk in conn:
        conn.put(chunk)
        if conn.buffered > MB:
            conn.flush()


def start_proxy(run_example, *upstreams, extra=()) -> Example:  # noqa: F811
    args = []
    for address in upstreams:
        args += ["--upstream", f"{address[0]}:{address[1]}"]
    return run_example("tcp_proxy", *args, *extra)


def stop_cleanly(proxy: Example) -> None:
    """SIGTERM, then poll for the exit without blocking the hub: the upstreams in this process
    must keep running while the proxy finishes its connections to them."""
    proxy.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + WAIT * 4
    while proxy.proc.poll() is None:
        assert time.monotonic() < deadline, f"tcp_proxy did not exit:\n{proxy.log()}"
        gevent.sleep(0.02)  # poll interval, not synchronisation
    proxy.assert_stops_cleanly(sig=None)


def proxy_address(proxy: Example) -> tuple[str, int]:
    return ("127.0.0.1", proxy.port)


def test_round_robin_skips_a_dead_upstream(run_example):  # noqa: F811
    dead = ("127.0.0.1", free_port())
    with serving(named("A")) as a, serving(named("B")) as b:
        proxy = start_proxy(run_example, a.address, dead, b.address)
        seen = []
        for _ in range(4):
            with connect(proxy_address(proxy)) as conn:
                seen.append(conn.get(timeout=WAIT))
                conn.put("through")
                assert conn.get(timeout=WAIT) == "through"
        # The readiness probe took one turn; from there the two live ones alternate.
        assert seen in (["A", "B", "A", "B"], ["B", "A", "B", "A"])
        assert "skipped" in proxy.log()
        stop_cleanly(proxy)


def test_half_close_reaches_the_upstream_and_the_reply_comes_back(run_example):  # noqa: F811
    def count_until_eof(conn):
        total = sum(len(chunk) for chunk in conn)
        conn.put(b"got %d bytes" % total)

    with serving(count_until_eof, filter=Stream()) as upstream:
        proxy = start_proxy(run_example, upstream.address)
        with connect(proxy_address(proxy), filter=Stream()) as conn:
            conn.put(b"x" * 300_000)
            conn.write_eof()  # the bytes, then our FIN: the upstream's loop ends
            reply = b"".join(conn)
        assert reply == b"got 300000 bytes"
        stop_cleanly(proxy)


def _get_or_eof(conn: greensrv.Connection) -> bytes:
    try:
        return conn.get(timeout=WAIT)  # type: ignore[no-any-return]
    except EOFError:
        return b""


@pytest.mark.parametrize("how", ["fin", "reset"])
def test_an_upstream_dying_mid_stream_closes_the_client_cleanly(run_example, how):  # noqa: F811
    def dies(conn):
        conn.put("partial reply")
        conn.flush()
        if how == "reset":
            conn.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    with serving(dies) as upstream:
        proxy = start_proxy(run_example, upstream.address)
        for _ in range(2):  # the second time: the proxy itself is unharmed
            with connect(proxy_address(proxy)) as conn:
                got = []
                with pytest.raises(EOFError):  # EOF, not a hang
                    while True:
                        got.append(conn.get(timeout=WAIT))
                # A reset may overtake the reply (the kernel drops unread data on a reset).
                assert got == ["partial reply"] or (how == "reset" and got == [])
        stop_cleanly(proxy)


def test_proxy_v2_header_upstream(run_example):  # noqa: F811
    # The upstream sees the readiness probe's connection too (its header may come first), so
    # the header looked for is the one of the connection that sends "hello".
    first = AsyncResult()

    def upstream(conn):
        data = b""
        while b"hello" not in data:
            try:
                data += conn.get()
            except EOFError:
                return  # the readiness probe's connection
        first.set(data)

    with serving(upstream, filter=Stream()) as server:
        proxy = start_proxy(run_example, server.address, extra=("--proxy-v2",))
        with connect(proxy_address(proxy), filter=Line()) as conn:
            conn.put("hello")
            header = wait_for(first, "the upstream's first bytes")
            assert header.startswith(b"\r\n\r\n\x00\r\nQUIT\n\x21\x11")
            local = conn.local_address
            assert socket.inet_aton(local[0]) + socket.inet_aton("127.0.0.1") in header
            assert struct.pack("!HH", local[1], proxy.port) in header
        stop_cleanly(proxy)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_100_mb_both_ways_intact_with_bounded_memory_while_the_reader_stalls(
        run_example):  # noqa: F811
    """The client sends 100 MB without reading until the whole chain is full (its own send
    blocks); the proxy's RSS must stay within 16 MB of its size before, and every byte must
    come back in order."""
    total = 100 * MB
    base = os.urandom(MB)
    sent_hash, got_hash = hashlib.sha256(), hashlib.sha256()
    stalled, done = Event(), Event()
    peak = [0]

    with serving(echo_with_backpressure, filter=Stream(), high_mark=MB,
                 low_mark=MB // 4) as upstream:
        proxy = start_proxy(run_example, upstream.address)
        conn = connect(proxy_address(proxy), filter=Stream(), high_mark=MB, low_mark=MB // 4,
                       output_limit=8 * MB)
        conn.put(b"warm-up")
        assert conn.get(timeout=WAIT) == b"warm-up"
        baseline = rss_bytes(proxy.proc.pid)

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_bytes(proxy.proc.pid))
                done.wait(0.02)  # a sampling period, bounded by the test's end

        def send():
            for i in range(total // MB):
                block = struct.pack("!Q", i) + base[8:]
                sent_hash.update(block)
                conn.put(block)
                try:
                    conn.flush(0.5)
                except TimeoutError:
                    stalled.set()  # nothing moves: every buffer on the way is full
                    conn.flush(WAIT * 6)
            stalled.set()

        def receive():
            wait_for(stalled, "the chain to fill while nobody reads", WAIT * 6)
            received = 0
            while received < total:
                chunk = conn.get(timeout=WAIT * 6)
                got_hash.update(chunk)
                received += len(chunk)

        sampler = gevent.spawn(sample)
        jobs = [gevent.spawn(send), gevent.spawn(receive)]
        try:
            gevent.joinall(jobs, timeout=240, raise_error=True)
            assert all(job.dead for job in jobs), "the transfer did not finish in time"
        finally:
            done.set()
            sampler.join(WAIT)
            gevent.killall(jobs)
            conn.close()
        assert got_hash.digest() == sent_hash.digest()
        growth = peak[0] - baseline
        assert growth < 16 * MB, f"proxy RSS grew by {growth / MB:.1f} MB"
        stop_cleanly(proxy)


def test_an_upstream_that_writes_while_the_client_uploads_does_not_deadlock(
        run_example):  # noqa: F811
    """Both directions full at once: the client uploads until the chain towards the upstream is
    full, and only then does the upstream write 32 MB of its own (flushing, not reading) before
    it echoes. A pump that let its sink's queue pass high_mark paused the other pump's reading
    of that same connection, so the upstream's writes and the client's upload waited on each
    other forever (seen as a rare stall of the 100 MB test above)."""
    blocks = 32
    base = os.urandom(MB)
    upload_full = Event()
    expected, got_hash = hashlib.sha256(), hashlib.sha256()
    talk = [struct.pack("!Q", i) + b"U" + base[9:] for i in range(blocks)]
    upload = [struct.pack("!Q", i) + b"C" + base[9:] for i in range(blocks)]
    for block in talk + upload:  # the upstream's own bytes first, then the echo
        expected.update(block)

    def talks_first_then_echoes(conn):
        upload_full.wait(WAIT * 6)
        for block in talk:
            conn.put(block)
            conn.flush()
        echo_with_backpressure(conn)

    with serving(talks_first_then_echoes, filter=Stream(), high_mark=MB,
                 low_mark=MB // 4) as upstream:
        proxy = start_proxy(run_example, upstream.address)
        conn = connect(proxy_address(proxy), filter=Stream(), high_mark=MB, low_mark=MB // 4,
                       output_limit=8 * MB)

        def send():
            for block in upload:
                conn.put(block)
                try:
                    conn.flush(0.5)
                except TimeoutError:
                    upload_full.set()  # nothing moves towards the upstream any more
                    conn.flush(WAIT * 6)
            upload_full.set()

        def receive():
            received = 0
            while received < 2 * blocks * MB:
                chunk = conn.get(timeout=WAIT * 6)
                got_hash.update(chunk)
                received += len(chunk)

        jobs = [gevent.spawn(send), gevent.spawn(receive)]
        try:
            gevent.joinall(jobs, timeout=120, raise_error=True)
            assert all(job.dead for job in jobs), "the transfer did not finish in time"
        finally:
            gevent.killall(jobs)
            conn.close()
        assert got_hash.digest() == expected.digest()
        stop_cleanly(proxy)
