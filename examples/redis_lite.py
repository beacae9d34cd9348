"""redis_lite: an in-memory subset of Redis that real Redis clients can talk to.

The framing is all in ``greensrv.filters.Resp`` (RESP2, plus inline commands for telnet users);
the handler is a plain loop over commands, one greenlet per client, and the data is one dict
shared by every client (greenlets switch only at I/O, so no lock is needed).

Commands: PING [msg], ECHO msg, SET key value, GET key, DEL key..., INCR key (and DECR,
INCRBY, DECRBY: redis-py's ``incr`` sends INCRBY), EXISTS key..., MGET key..., plus what clients
send on their own: QUIT, SELECT 0, FLUSHDB/FLUSHALL, DBSIZE, CLIENT ... (accepted), CONFIG GET
save/appendonly, COMMAND (no docs), and HELLO [2]. HELLO 3 gets Redis's NOPROTO error: this
server speaks RESP2 only, so redis-py 8, which asks for RESP3 by default, needs
``redis.Redis(protocol=2)``. Anything else gets Redis's "unknown command" error. No MULTI/EXEC:
use ``pipeline(transaction=False)``.

    python examples/redis_lite.py [--host 127.0.0.1] [--port 6380]
    redis-cli -p 6380 set greeting hello
    redis-benchmark -p 6380 -t ping,set,get,incr -q

SIGTERM or Ctrl-C stops it gracefully.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import Any

import greensrv
from greensrv.filters import Resp, RespError

log = logging.getLogger("redis_lite")

OK = "OK"
Reply = Any
Store = dict[bytes, bytes]


def wrong_args(name: bytes) -> RespError:
    return RespError(f"ERR wrong number of arguments for '{name.decode(errors='replace').lower()}'"
                     " command")


def _int(value: bytes) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    return number if -(2**63) <= number < 2**63 and value.strip() == value else None


def cmd_ping(db: Store, args: list[bytes]) -> Reply:
    return "PONG" if not args else args[0]


def cmd_echo(db: Store, args: list[bytes]) -> Reply:
    return args[0]


def cmd_set(db: Store, args: list[bytes]) -> Reply:
    db[args[0]] = args[1]
    return OK


def cmd_get(db: Store, args: list[bytes]) -> Reply:
    return db.get(args[0])


def cmd_del(db: Store, args: list[bytes]) -> Reply:
    return sum(db.pop(key, None) is not None for key in args)


def cmd_exists(db: Store, args: list[bytes]) -> Reply:
    return sum(key in db for key in args)


def cmd_mget(db: Store, args: list[bytes]) -> Reply:
    return [db.get(key) for key in args]


def add(db: Store, key: bytes, delta: int | None) -> Reply:
    number = _int(db.get(key, b"0"))
    if number is None or delta is None or not -(2**63) <= number + delta < 2**63:
        return RespError("ERR value is not an integer or out of range")
    db[key] = b"%d" % (number + delta)
    return number + delta


def cmd_incr(db: Store, args: list[bytes]) -> Reply:
    return add(db, args[0], 1)


def cmd_decr(db: Store, args: list[bytes]) -> Reply:
    return add(db, args[0], -1)


def cmd_incrby(db: Store, args: list[bytes]) -> Reply:
    return add(db, args[0], _int(args[1]))


def cmd_decrby(db: Store, args: list[bytes]) -> Reply:
    delta = _int(args[1])
    return add(db, args[0], None if delta is None else -delta)


def cmd_flush(db: Store, args: list[bytes]) -> Reply:
    db.clear()
    return OK


def cmd_dbsize(db: Store, args: list[bytes]) -> Reply:
    return len(db)


def cmd_select(db: Store, args: list[bytes]) -> Reply:
    return OK if args[0] == b"0" else RespError("ERR DB index is out of range")


def cmd_ok(db: Store, args: list[bytes]) -> Reply:
    return OK


def cmd_config(db: Store, args: list[bytes]) -> Reply:
    if args[0].upper() != b"GET":
        return RespError("ERR CONFIG is read-only here")
    return [item for name in args[1:] for item in (name, CONFIG.get(name.lower(), b""))]


def cmd_hello(db: Store, args: list[bytes]) -> Reply:
    if args and args[0] != b"2":
        return RespError("NOPROTO unsupported protocol version")  # Redis's reply; RESP2 only
    return [b"server", b"redis", b"version", b"7.0.0", b"proto", 2, b"mode", b"standalone",
            b"role", b"master", b"modules", []]


def cmd_empty(db: Store, args: list[bytes]) -> Reply:
    return []


#: What ``CONFIG GET`` reports (redis-benchmark asks for these two).
CONFIG = {b"save": b"", b"appendonly": b"no"}


#: name -> (function, fewest arguments, most arguments or None for any number)
COMMANDS: dict[bytes, tuple[Callable[[Store, list[bytes]], Reply], int, int | None]] = {
    b"PING": (cmd_ping, 0, 1),
    b"ECHO": (cmd_echo, 1, 1),
    b"SET": (cmd_set, 2, 2),
    b"GET": (cmd_get, 1, 1),
    b"DEL": (cmd_del, 1, None),
    b"EXISTS": (cmd_exists, 1, None),
    b"MGET": (cmd_mget, 1, None),
    b"INCR": (cmd_incr, 1, 1),
    b"DECR": (cmd_decr, 1, 1),
    b"INCRBY": (cmd_incrby, 2, 2),
    b"DECRBY": (cmd_decrby, 2, 2),
    b"FLUSHDB": (cmd_flush, 0, 1),
    b"FLUSHALL": (cmd_flush, 0, 1),
    b"DBSIZE": (cmd_dbsize, 0, 0),
    b"SELECT": (cmd_select, 1, 1),
    b"QUIT": (cmd_ok, 0, 0),
    b"CLIENT": (cmd_ok, 1, None),
    b"CONFIG": (cmd_config, 1, None),
    b"HELLO": (cmd_hello, 0, 1),
    b"COMMAND": (cmd_empty, 0, None),
}


def execute(db: Store, command: Any) -> Reply:
    """Run one command (a list of bytes) and return its reply."""
    if not isinstance(command, list) or not command or not all(
            isinstance(arg, bytes) for arg in command):
        return RespError("ERR Protocol error: expected an array of bulk strings")
    name, args = command[0].upper(), command[1:]
    entry = COMMANDS.get(name)
    if entry is None:
        shown = " ".join(f"'{a.decode(errors='replace')}'" for a in args[:3])
        return RespError(f"ERR unknown command '{command[0].decode(errors='replace')}', "
                         f"with args beginning with: {shown}")
    function, fewest, most = entry
    if len(args) < fewest or (most is not None and len(args) > most):
        return wrong_args(name)
    return function(db, args)


def make_handler(db: Store) -> Callable[[greensrv.Connection], None]:
    def serve(conn: greensrv.Connection) -> None:
        """One client: a reply per command, in order, until EOF or QUIT."""
        for command in conn:
            conn.put(execute(db, command))
            if isinstance(command, list) and command and command[0] in (b"QUIT", b"quit"):
                break
    return serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An in-memory subset of Redis (RESP2).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=6380, help="TCP port (default %(default)s)")
    args = parser.parse_args(argv)
    server = greensrv.Server(handler=make_handler({}), filter=Resp(), host=args.host,
                             port=args.port, name="redis_lite")
    server.serve_forever()


if __name__ == "__main__":
    main()
