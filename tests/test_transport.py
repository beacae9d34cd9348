"""PlainTransport's read and write on real sockets: libc recv/send when compiled, the socket's
methods as Python. Both must behave exactly as the socket's own methods do: None/0 when the socket
would block, the bytes otherwise, and the same OSError subclass, errno and strerror on failure."""

from __future__ import annotations

import errno
import socket
import struct

import gevent.socket
import pytest

from greensrv.connection import RECV_SIZE
from greensrv.transport import PlainTransport


@pytest.fixture(params=["tcp", "unix"])
def pair(request):
    """A connected pair: (our end, the peer's end); ours is a gevent socket, as the server's."""
    if request.param == "unix":
        ours, peer = socket.socketpair()
    else:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            peer = socket.create_connection(listener.getsockname())
            ours, _ = listener.accept()
    ours = gevent.socket.socket(fileno=ours.detach())
    yield ours, peer
    ours.close()
    peer.close()


def reset_by_peer():
    """Our end of a TCP connection whose peer closed with RST (SO_LINGER 0)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        peer = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()
    return ours


def failure(call):
    with pytest.raises(OSError) as caught:
        call()
    exc = caught.value
    return type(exc), exc.errno, exc.strerror


def test_nothing_there_is_none_and_bytes_come_as_they_are(pair):
    ours, peer = pair
    transport = PlainTransport(ours)
    assert transport.recv(RECV_SIZE) is None
    peer.sendall(b"one\r\n")
    assert transport.recv(RECV_SIZE) == b"one\r\n"
    assert transport.recv(RECV_SIZE) is None
    peer.sendall(b"abcdef")
    assert transport.recv(4) == b"abcd"  # never more than asked
    assert transport.recv(RECV_SIZE) == b"ef"


def test_eof_is_empty_bytes(pair):
    ours, peer = pair
    transport = PlainTransport(ours)
    peer.sendall(b"last")
    peer.shutdown(socket.SHUT_WR)
    assert transport.recv(RECV_SIZE) == b"last"
    assert transport.recv(RECV_SIZE) == b""


def test_bulk_reads_and_writes_carry_every_byte_in_order(pair):
    ours, peer = pair
    transport = PlainTransport(ours)
    payload = bytes(range(256)) * 4096  # 1 MiB: many full RECV_SIZE reads
    peer.setblocking(False)
    received = bytearray()
    sent = 0
    while len(received) < len(payload):
        if sent < len(payload):
            try:
                sent += peer.send(payload[sent:sent + 200_000])
            except BlockingIOError:
                pass
        data = transport.recv(RECV_SIZE)
        if data is not None:
            assert 0 < len(data) <= RECV_SIZE
            received += data
    assert bytes(received) == payload
    # The other way: send() takes what the kernel takes and says how much, until it is full.
    out = bytearray(payload)
    total = 0
    while True:
        n = transport.send(out)
        if n == 0:
            break  # full: 0, not an exception
        assert 0 < n <= len(out)
        total += n
        del out[:n]
        if not out:
            out = bytearray(payload)
    got = bytearray()
    peer.setblocking(True)
    peer.settimeout(5.0)
    while len(got) < total:
        got += peer.recv(1 << 20)
    assert bytes(got) == (payload * (total // len(payload) + 1))[:total]


def test_reads_above_the_buffer_and_other_buffer_types_work(pair):
    ours, peer = pair
    transport = PlainTransport(ours)
    peer.sendall(b"x" * 10)
    assert transport.recv(RECV_SIZE * 4) == b"x" * 10  # more than the C buffer holds: asked
    assert transport.send(b"bytes") == 5
    assert transport.send(memoryview(b"view")) == 4
    assert transport.send(bytearray()) == 0
    peer.settimeout(5.0)
    got = b""
    while len(got) < 9:
        got += peer.recv(100)
    assert got == b"bytesview"


def test_after_close_reads_and_writes_fail_as_the_socket_does(pair):
    ours, _peer = pair
    transport = PlainTransport(ours)
    raw = ours._sock
    ours.close()
    expected = failure(lambda: raw.recv(RECV_SIZE))
    assert expected[:2] == (OSError, errno.EBADF)
    assert failure(lambda: transport.recv(RECV_SIZE)) == expected
    assert failure(lambda: transport.send(bytearray(b"x"))) == failure(lambda: raw.send(b"x"))


def test_a_reset_is_connection_reset_error_with_its_errno_and_text():
    ours, twin = reset_by_peer(), reset_by_peer()
    try:
        expected = failure(lambda: twin.recv(RECV_SIZE))
        assert expected[:2] == (ConnectionResetError, errno.ECONNRESET)
        assert failure(lambda: PlainTransport(ours).recv(RECV_SIZE)) == expected
        # After the reset was reported, a write fails as the socket's send does (EPIPE).
        assert (failure(lambda: PlainTransport(ours).send(bytearray(b"x")))
                == failure(lambda: twin.send(b"x")))
    finally:
        ours.close()
        twin.close()
