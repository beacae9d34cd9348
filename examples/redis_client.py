"""redis_client: greensrv.connect with the Resp filter, talking to a real Redis.

The same Connection a server's handler gets, on the client side: commands are lists of bytes,
replies come back as Python values (RESP2 or RESP3), ``put(*commands)`` pipelines any number of
commands in one write, and ``get()`` reads the replies in order. After ``HELLO 3`` a subscriber
receives pub/sub messages as ``Push`` records, which ``isinstance`` tells apart from replies.

    redis-server --port 6379 &
    python examples/redis_client.py [--host 127.0.0.1] [--port 6379] [--count 10000]
"""

from __future__ import annotations

import argparse
import logging
import time

import greensrv
from greensrv.filters import Push, Resp, RespError

log = logging.getLogger("redis_client")

#: Seconds to wait for a connection or a reply: a local Redis answers in microseconds.
TIMEOUT = 10.0


def command(conn: greensrv.Connection, *args: bytes | str) -> object:
    """Send one command and return its reply (raising a Redis error reply)."""
    conn.put([a.encode() if isinstance(a, str) else a for a in args])
    reply = conn.get(timeout=TIMEOUT)
    if isinstance(reply, RespError):
        raise RuntimeError(f"redis: {reply}")
    return reply


def pipelined(conn: greensrv.Connection, count: int) -> None:
    """``count`` INCRs in one put(): one write, then the replies in order."""
    command(conn, "DEL", "counter")
    began = time.perf_counter()
    conn.put(*([b"INCR", b"counter"] for _ in range(count)))
    replies = [conn.get(timeout=TIMEOUT) for _ in range(count)]
    elapsed = time.perf_counter() - began
    assert replies == list(range(1, count + 1)), "replies out of order"
    log.info("%d pipelined INCRs in %.3f s (%.0f/s); counter = %s", count, elapsed,
             count / elapsed, command(conn, "GET", "counter").decode())  # type: ignore[union-attr]


def pub_sub(address: tuple[str, int]) -> None:
    """A RESP3 subscriber gets a published message as a Push."""
    with (greensrv.connect(address, filter=Resp(), timeout=TIMEOUT) as sub,
          greensrv.connect(address, filter=Resp(), timeout=TIMEOUT) as pub):
        hello = command(sub, "HELLO", "3")
        log.info("HELLO 3: %s", hello)
        confirm = command(sub, "SUBSCRIBE", "greetings")
        log.info("subscribed: %r (a push: %s)", confirm, isinstance(confirm, Push))
        receivers = command(pub, "PUBLISH", "greetings", "hello from redis_client")
        log.info("published to %s subscriber(s)", receivers)
        message = sub.get(timeout=TIMEOUT)
        if isinstance(message, Push):
            log.info("push: %s", list(message))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A Redis client on greensrv.connect + Resp.")
    parser.add_argument("--host", default="127.0.0.1", help="Redis host (default %(default)s)")
    parser.add_argument("--port", type=int, default=6379, help="Redis port (default %(default)s)")
    parser.add_argument("--count", type=int, default=10_000,
                        help="commands to pipeline (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    address = (args.host, args.port)
    with greensrv.connect(address, filter=Resp(), timeout=TIMEOUT) as conn:
        log.info("PING: %s", command(conn, "PING"))
        command(conn, "SET", "greeting", "hello")
        log.info("GET greeting: %r", command(conn, "GET", "greeting"))
        pipelined(conn, args.count)
    pub_sub(address)


if __name__ == "__main__":
    main()
