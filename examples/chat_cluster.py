"""Cluster chat: examples/chat.py's room shared through Redis pub/sub, across workers and machines.

``server.connections`` (and chat.py's dict) hold the clients of one worker process: under
``--workers 2`` or behind a balancer in front of several machines, a broadcast over them reaches
only the clients that happen to share that worker. Here every line goes to Redis instead
(``PUBLISH``) and every worker subscribes to the room's channel, delivering what comes back to
its own clients: all clients see every message, in the order each sender sent them.

Each worker keeps one connection to Redis, made with ``greensrv.connect`` and the ``Resp``
filter in RESP3 (``HELLO 3``): in RESP3 a subscribed connection may still send commands, so the
same connection subscribes and publishes; published messages come back as ``Push`` records, the
replies to ``PUBLISH`` as integers. When Redis goes away the worker reconnects with ``Backoff``
and subscribes again; lines sent meanwhile are dropped (and counted in the log): pub/sub never
stores messages, so the loss window is the time Redis was unreachable.

Protocol (chat.py's): every line you send reaches everyone else as ``<you> line``; ``/quit``
says goodbye. Nicknames are the client's ``ip:port`` (the real client's behind a PROXY-protocol
balancer). The welcome line names you but does not count the others: they are spread over
processes that do not share a list.

    redis-server &
    greensrv examples/chat_cluster.py:server -w 2      # any number of workers and machines
    python examples/chat_cluster.py [--host 127.0.0.1] [--port 12345] [--redis-url URL]

The Redis address comes from ``--redis-url`` or the ``REDIS_URL`` environment variable
(default ``redis://127.0.0.1:6379/0``); the room's channel is ``CHAT_CHANNEL``
(default ``greensrv-chat``).
"""

from __future__ import annotations

import argparse
import logging
import os
import urllib.parse
import uuid

import gevent
from gevent.event import Event

import greensrv
from greensrv.filters import Push, Resp, RespError

log = logging.getLogger("chat_cluster")

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Seconds a new client waits for its worker's subscription before it is welcomed anyway (its
#: worker is then reconnecting to Redis, and the client misses messages until it is back).
SUBSCRIBE_WAIT = 5.0
#: Seconds to connect to Redis: a local one answers in microseconds, a remote one in a few ms.
CONNECT_TIMEOUT = 5.0
#: Reconnection delays: a restarted Redis is back within a second or two, so start small.
RECONNECT = greensrv.Backoff(initial=0.1, maximum=5.0, reset_after=1.0)


def redis_address(url: str) -> tuple[str, int]:
    """``redis://host:port/db`` → ``(host, port)``; the error names the URL as given."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "redis" or not parsed.hostname:
        raise ValueError(f"REDIS_URL must look like redis://HOST:PORT/DB, not {url!r}")
    return parsed.hostname, parsed.port or 6379


class ClusterRoom:
    """One worker's end of the room: its own clients, and its one Redis connection."""

    def __init__(self, redis_url: str, channel: str) -> None:
        self.address = redis_address(redis_url)
        self.channel = channel
        self.clients: dict[int, greensrv.Connection] = {}
        self.redis: greensrv.Connection | None = None
        self.subscribed = Event()
        self.dropped = 0
        self._pid = 0  # the process whose link runs: a forked worker starts its own
        self._origin = ""

    def start(self) -> None:
        """Start this process's Redis link, once (called from the first client of a worker)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._origin = uuid.uuid4().hex  # tells this worker's own messages apart
            self.subscribed.clear()
            gevent.spawn(self._link)

    def _link(self) -> None:
        delays = RECONNECT.delays()
        while True:
            try:
                with greensrv.connect(self.address, filter=Resp(), timeout=CONNECT_TIMEOUT) as conn:
                    conn.put(["HELLO", "3"], ["SUBSCRIBE", self.channel])
                    self._serve(conn)
            except (OSError, EOFError, TimeoutError) as exc:
                log.warning("redis %s:%s: %s", *self.address, exc or type(exc).__name__)
            if self.subscribed.is_set():  # it had worked: start the delays over
                delays = RECONNECT.delays()
            self.redis = None
            self.subscribed.clear()
            gevent.sleep(next(delays))

    def _serve(self, conn: greensrv.Connection) -> None:
        """Read the link until it ends: the subscription's confirmation, then messages."""
        for record in conn:
            if isinstance(record, Push):
                kind = record[0]
                if kind in (b"subscribe", "subscribe"):
                    self.redis = conn
                    self.subscribed.set()
                    log.info("subscribed to %s on redis %s:%s", self.channel, *self.address)
                elif kind in (b"message", "message"):
                    self._deliver(record[2])
            elif isinstance(record, RespError):
                raise OSError(f"redis refused: {record}")
        raise EOFError("redis closed the connection")

    def _deliver(self, payload: bytes) -> None:
        sender, _, line = payload.decode().partition("\n")
        for conn in list(self.clients.values()):
            if f"{self._origin}:{conn.id}" != sender:
                conn.put(line)

    def publish(self, conn: greensrv.Connection, line: str) -> None:
        """Send ``line`` to the whole room (everyone but ``conn``); never blocks."""
        redis = self.redis
        if redis is None or redis.closed:
            self.dropped += 1
            log.warning("redis unreachable: dropped a line (%d so far)", self.dropped)
            return
        redis.put(["PUBLISH", self.channel, f"{self._origin}:{conn.id}\n{line}"])

    # -- the server's callbacks, as in chat.py -----------------------------------------------

    def connected(self, conn: greensrv.Connection) -> None:
        self.start()
        self.subscribed.wait(SUBSCRIBE_WAIT)
        nick = conn.data["nick"] = f"{conn.remote_ip}:{conn.remote_port}"
        conn.put(f"Welcome, {nick}.")
        self.clients[conn.id] = conn
        self.publish(conn, f"* {nick} joined")

    def input(self, conn: greensrv.Connection, line: str) -> None:
        if line == "/quit":
            conn.put("B'bye!")
            conn.shutdown()
            return
        self.publish(conn, f"<{conn.data['nick']}> {line}")

    def disconnected(self, conn: greensrv.Connection) -> None:
        if self.clients.pop(conn.id, None) is not None:
            self.publish(conn, f"* {conn.data['nick']} left")


def make_server(host: str = "127.0.0.1", port: int = 12345,
                redis_url: str | None = None) -> greensrv.Server:
    room = ClusterRoom(redis_url or os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
                       os.environ.get("CHAT_CHANNEL", "greensrv-chat"))
    return greensrv.Server(
        host=host,
        port=port,
        client_connected=room.connected,
        client_input=room.input,
        client_disconnected=room.disconnected,
    )


#: The example as the ``greensrv`` command runs it, with any number of workers:
#: ``greensrv examples/chat_cluster.py:server -w 2``.
server = make_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Line-based chat shared through Redis pub/sub.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="TCP port (default %(default)s)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
                        help="Redis to share the room through (default %(default)s)")
    args = parser.parse_args(argv)
    make_server(args.host, args.port, args.redis_url).serve_forever()


if __name__ == "__main__":
    main()
