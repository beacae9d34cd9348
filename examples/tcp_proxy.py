"""tcp_proxy: a TCP proxy and tiny load balancer, a greensrv server and client in one handler.

Each inbound connection opens a ``greensrv.connect`` to the next upstream, round robin, skipping
one that refuses (each is tried once per client); bytes then flow both ways through ``Stream``
filters. Backpressure holds in both directions: the pump stops reading one side while more than
``FLUSH_AT`` bytes are queued towards the other (``flush()`` waits for them to drain), so a slow
reader on either side makes the proxy read less, never buffer more. The two directions are
independent: a connection's own backpressure (``get()`` waits while its output is above
``high_mark``) would otherwise tie them, and deadlock a chain full both ways (see ``HIGH_MARK``).
End of input on one side is passed
on as a half-close (FIN) of the other, so request/response protocols that rely on it
(``nc -N``, HTTP/1.0 uploads) work; a reset on either side closes both.

    python examples/tcp_proxy.py --port 8000 --upstream 127.0.0.1:9001 --upstream 127.0.0.1:9002
    python examples/tcp_proxy.py --port 8000 --upstream 127.0.0.1:9001 --proxy-v2

``--proxy-v2`` sends a PROXY protocol v2 header to the upstream first, so a greensrv server
with ``proxy_protocol="v2"`` (or HAProxy, nginx...) sees the real client's address.
SIGTERM or Ctrl-C stops it gracefully.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import logging
import os
import struct
from typing import Any

import gevent

import greensrv
from greensrv.filters import Stream

log = logging.getLogger("tcp_proxy")

#: Bytes queued towards one side before the pump stops reading the other: four 64 KiB reads in
#: flight keep a fast link busy while bounding what one slow peer costs (about 2 × 320 KiB per
#: connection, both directions: FLUSH_AT plus the one read that crossed it).
FLUSH_AT = 256 * 1024
#: The connections' own high_mark, above anything a pump queues (FLUSH_AT plus one 64 KiB read).
#: A Connection stops reading while its output is above high_mark; here a connection's input and
#: output belong to different directions, so if a pump could push its sink past high_mark, the
#: other pump would stop reading that same connection. With a peer that writes before it reads
#: (an echo server flushing its replies), both directions would then wait on each other forever.
HIGH_MARK = 2 * FLUSH_AT
#: Seconds to connect to one upstream before trying the next: loopback or LAN upstreams answer
#: in milliseconds; a dead host must not hold the client for long.
CONNECT_TIMEOUT = 3.0


def v2_header(client: Any, local: Any) -> bytes:
    """A PROXY v2 header for a TCP client, built here when ``greensrv.proxy`` is absent."""
    source, destination = ipaddress.ip_address(client[0]), ipaddress.ip_address(local[0])
    if source.version != destination.version:
        return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x20, 0x00]) + struct.pack("!H", 0)  # LOCAL
    family = 0x11 if source.version == 4 else 0x21  # TCP over IPv4 / IPv6
    body = source.packed + destination.packed + struct.pack("!HH", client[1], local[1])
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


def proxy_header(conn: greensrv.Connection) -> Any:
    """The header describing ``conn``'s client: greensrv.proxy's ProxyHeader if installed."""
    try:
        from greensrv.proxy import ProxyHeader  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return v2_header(conn.remote_address, conn.local_address)
    return ProxyHeader(version=2, command="PROXY", source=conn.remote_address[:2],
                       destination=conn.local_address[:2])


class Balancer:
    """Round robin over the upstreams; each client tries every upstream at most once."""

    def __init__(self, upstreams: list[tuple[str, int]], send_proxy_header: bool) -> None:
        self.upstreams = upstreams
        self._next = itertools.cycle(range(len(upstreams)))
        self.send_proxy_header = send_proxy_header

    def open_upstream(self, client: greensrv.Connection) -> greensrv.Connection | None:
        header = proxy_header(client) if self.send_proxy_header else None
        for _ in self.upstreams:
            address = self.upstreams[next(self._next)]
            try:
                return greensrv.connect(address, filter=Stream(), timeout=CONNECT_TIMEOUT,
                                        proxy_header=header, high_mark=HIGH_MARK,
                                        low_mark=HIGH_MARK // 4)
            except OSError as exc:  # refused, unreachable, timed out: try the next one
                log.warning("upstream %s:%d skipped: %s", *address, exc)
        return None

    def handle(self, down: greensrv.Connection) -> None:
        """One client: pump both ways until both directions have ended."""
        up = self.open_upstream(down)
        if up is None:
            log.error("no upstream for %s: all %d refused", down.remote_address,
                      len(self.upstreams))
            return
        with up:
            back = gevent.spawn(pump, up, down)
            try:
                pump(down, up)
                back.join()
            finally:
                back.kill()


def pump(source: greensrv.Connection, sink: greensrv.Connection) -> None:
    """Copy ``source``'s bytes to ``sink`` with backpressure; pass its end on as a FIN.

    ``closing`` on the sink means its peer is gone (a write failed, or a reset): then both
    sides are closed, so the other direction ends too. Otherwise the end of ``source`` becomes
    ``sink.write_eof()``: a half-close, after which the other direction goes on.
    """
    for chunk in source:
        sink.put(chunk)
        if sink.buffered > FLUSH_AT:
            sink.flush()  # stop reading source until sink's peer has taken the bytes
        if sink.closing:
            break
    if sink.closing:
        source.close()
        sink.close()
        return
    sink.write_eof()  # what is queued, then FIN; sink closes by itself at its peer's EOF


def parse_upstream(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (or ``[V6]:PORT``); ``ValueError`` otherwise."""
    host, _, port = text.strip().rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def make_server(upstreams: list[tuple[str, int]], proxy_v2: bool = False,
                host: str = "127.0.0.1", port: int = 8000) -> greensrv.Server:
    balancer = Balancer(upstreams, proxy_v2)
    return greensrv.Server(handler=balancer.handle, filter=Stream(), host=host, port=port,
                           high_mark=HIGH_MARK, low_mark=HIGH_MARK // 4, name="tcp_proxy")


#: The example as the ``greensrv`` command runs it: ``TCP_PROXY_UPSTREAMS=HOST:PORT[,...]
#: greensrv examples/tcp_proxy.py:server`` (the upstreams default to 127.0.0.1:8001).
server = make_server([parse_upstream(u) for u in
                      os.environ.get("TCP_PROXY_UPSTREAMS", "127.0.0.1:8001").split(",")])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A TCP proxy and round-robin balancer.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default %(default)s)")
    parser.add_argument("--upstream", action="append", required=True, metavar="HOST:PORT",
                        help="an upstream server (repeat for several)")
    parser.add_argument("--proxy-v2", action="store_true",
                        help="send a PROXY protocol v2 header to the upstream")
    args = parser.parse_args(argv)
    try:
        upstreams = [parse_upstream(text) for text in args.upstream]
    except ValueError as exc:
        parser.error(f"--upstream {exc}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s [%(name)s] %(message)s")
    make_server(upstreams, args.proxy_v2, args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
