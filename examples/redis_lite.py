"""redis_lite: an in-memory subset of Redis that real Redis clients can talk to.

The framing is all in ``greensrv.filters.Resp`` (RESP2 and RESP3, plus inline commands for telnet
users); the handler is a plain loop over commands, one greenlet per client, and the data is one
dict shared by every client (greenlets switch only at I/O, so no lock is needed).

Commands: PING [msg], ECHO msg, SET key value, GET key, DEL key..., INCR key (and DECR,
INCRBY, DECRBY: redis-py's ``incr`` sends INCRBY), EXISTS key..., MGET key..., plus what clients
send on their own: HELLO [2|3 [AUTH user pass] [SETNAME name]] (answered as Redis does: the
server map, RESP3 from then on after ``HELLO 3``, NOPROTO for any other version), CLIENT ID,
CLIENT SETNAME/GETNAME, CLIENT SETINFO, SELECT 0, QUIT, FLUSHDB/FLUSHALL, DBSIZE, CONFIG GET
save/appendonly, COMMAND (no docs). So redis-py with its default settings (it opens with
``HELLO 3``), ``redis-cli -2``/``-3`` and ``redis-benchmark`` all work. Anything else gets
Redis's "unknown command" error. No MULTI/EXEC: use ``pipeline(transaction=False)``.

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
#: A command as the filter hands it over: its words, the name first (``[b"SET", b"k", b"v"]``).
Command = list[bytes]
Store = dict[bytes, bytes]
#: What HELLO reports: a Redis version recent enough that clients enable what they know.
VERSION = b"7.2.0"


class Session:
    """One client's state: the shared store, its connection, its name and protocol."""

    __slots__ = ("conn", "db", "info", "name", "quitting")

    def __init__(self, db: Store, conn: greensrv.Connection) -> None:
        self.db = db
        self.conn = conn
        self.name: bytes | None = None
        self.info: dict[bytes, bytes] = {}  # CLIENT SETINFO lib-name / lib-ver
        self.quitting = False  # QUIT: close once its reply is queued

    @property
    def protocol(self) -> int:
        return self.conn.output_filter.protocol  # type: ignore[attr-defined, no-any-return]


def wrong_args(name: bytes) -> RespError:
    return RespError(f"ERR wrong number of arguments for '{name.decode(errors='replace').lower()}'"
                     " command")


def _int(value: bytes) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    return number if -(2**63) <= number < 2**63 and value.strip() == value else None


def cmd_ping(s: Session, cmd: Command) -> Reply:
    return "PONG" if len(cmd) == 1 else cmd[1]


def cmd_echo(s: Session, cmd: Command) -> Reply:
    return cmd[1]


def cmd_set(s: Session, cmd: Command) -> Reply:
    s.db[cmd[1]] = cmd[2]
    return OK


def cmd_get(s: Session, cmd: Command) -> Reply:
    return s.db.get(cmd[1])


def cmd_del(s: Session, cmd: Command) -> Reply:
    return sum(s.db.pop(key, None) is not None for key in cmd[1:])


def cmd_exists(s: Session, cmd: Command) -> Reply:
    return sum(key in s.db for key in cmd[1:])


def cmd_mget(s: Session, cmd: Command) -> Reply:
    return [s.db.get(key) for key in cmd[1:]]


def add(s: Session, key: bytes, delta: int | None) -> Reply:
    db = s.db
    number = _int(db.get(key, b"0"))
    if number is None or delta is None or not -(2**63) <= number + delta < 2**63:
        return RespError("ERR value is not an integer or out of range")
    db[key] = b"%d" % (number + delta)
    return number + delta


def cmd_incr(s: Session, cmd: Command) -> Reply:
    return add(s, cmd[1], 1)


def cmd_decr(s: Session, cmd: Command) -> Reply:
    return add(s, cmd[1], -1)


def cmd_incrby(s: Session, cmd: Command) -> Reply:
    return add(s, cmd[1], _int(cmd[2]))


def cmd_decrby(s: Session, cmd: Command) -> Reply:
    delta = _int(cmd[2])
    return add(s, cmd[1], None if delta is None else -delta)


def cmd_flush(s: Session, cmd: Command) -> Reply:
    s.db.clear()
    return OK


def cmd_dbsize(s: Session, cmd: Command) -> Reply:
    return len(s.db)


def cmd_select(s: Session, cmd: Command) -> Reply:
    return OK if cmd[1] == b"0" else RespError("ERR DB index is out of range")


def cmd_quit(s: Session, cmd: Command) -> Reply:
    s.quitting = True
    return OK


def cmd_config(s: Session, cmd: Command) -> Reply:
    if cmd[1].upper() != b"GET":
        return RespError("ERR CONFIG is read-only here")
    return {name: CONFIG.get(name.lower(), b"") for name in cmd[2:]}  # a map in RESP3


def cmd_hello(s: Session, cmd: Command) -> Reply:
    """HELLO [protover [AUTH username password] [SETNAME clientname]], as Redis 7 answers."""
    protocol = s.protocol
    if len(cmd) > 1:
        version = _int(cmd[1])
        if version is None:
            return RespError("ERR Protocol version is not an integer or out of range")
        if version not in (2, 3):
            return RespError("NOPROTO unsupported protocol version")
        protocol = version
    options = cmd[2:]
    name = s.name
    while options:
        option = options[0].upper()
        if option == b"AUTH" and len(options) >= 3:
            options = options[3:]  # no users here: like Redis's default user with nopass
        elif option == b"SETNAME" and len(options) >= 2:
            name = options[1]
            if not valid_name(name):
                return BAD_NAME
            options = options[2:]
        else:
            shown = options[0].decode(errors="replace")
            return RespError(f"ERR Syntax error in HELLO option '{shown}'")
    s.name = name or None
    s.conn.output_filter.protocol = protocol  # type: ignore[attr-defined]  # this reply too
    return {b"server": b"redis", b"version": VERSION, b"proto": protocol, b"id": s.conn.id,
            b"mode": b"standalone", b"role": b"master", b"modules": []}


BAD_NAME = RespError("ERR Client names cannot contain spaces, newlines or special characters.")


def valid_name(name: bytes) -> bool:
    return all(33 <= c <= 126 for c in name)


def cmd_client(s: Session, cmd: Command) -> Reply:
    sub, rest = cmd[1].upper(), cmd[2:]
    if sub == b"ID" and not rest:
        return s.conn.id
    if sub == b"GETNAME" and not rest:
        return s.name
    if sub == b"SETNAME" and len(rest) == 1:
        if not valid_name(rest[0]):
            return BAD_NAME
        s.name = rest[0] or None
        return OK
    if sub == b"SETINFO" and len(rest) == 2:
        attr = rest[0].lower()
        if attr not in (b"lib-name", b"lib-ver"):
            return RespError(f"ERR Unrecognized option '{rest[0].decode(errors='replace')}'")
        s.info[attr] = rest[1]
        return OK
    return RespError(f"ERR unknown subcommand or wrong number of arguments for "
                     f"'{cmd[1].decode(errors='replace')}'. Try CLIENT HELP.")


def cmd_empty(s: Session, cmd: Command) -> Reply:
    return []


#: What ``CONFIG GET`` reports (redis-benchmark asks for these two).
CONFIG = {b"save": b"", b"appendonly": b"no"}


ANY = 1 << 20  #: as many arguments as a client sends (Resp's max_array_length is 1 Mi)

#: name -> (function, fewest arguments, most arguments)
TABLE: dict[bytes, tuple[Callable[[Session, Command], Reply], int, int]] = {
    b"PING": (cmd_ping, 0, 1),
    b"ECHO": (cmd_echo, 1, 1),
    b"SET": (cmd_set, 2, 2),
    b"GET": (cmd_get, 1, 1),
    b"DEL": (cmd_del, 1, ANY),
    b"EXISTS": (cmd_exists, 1, ANY),
    b"MGET": (cmd_mget, 1, ANY),
    b"INCR": (cmd_incr, 1, 1),
    b"DECR": (cmd_decr, 1, 1),
    b"INCRBY": (cmd_incrby, 2, 2),
    b"DECRBY": (cmd_decrby, 2, 2),
    b"FLUSHDB": (cmd_flush, 0, 1),
    b"FLUSHALL": (cmd_flush, 0, 1),
    b"DBSIZE": (cmd_dbsize, 0, 0),
    b"SELECT": (cmd_select, 1, 1),
    b"QUIT": (cmd_quit, 0, 0),
    b"CLIENT": (cmd_client, 1, ANY),
    b"CONFIG": (cmd_config, 1, ANY),
    b"HELLO": (cmd_hello, 0, ANY),
    b"COMMAND": (cmd_empty, 0, ANY),
}

#: What execute() looks up: the function and the lengths its command may have (name included),
#: by the name as clients send it: upper case (redis-benchmark, redis-cli) or lower case
#: (redis-py), each a single lookup; any other spelling is upper-cased first.
COMMANDS = {spelling: (function, range(fewest + 1, most + 2))
            for name, (function, fewest, most) in TABLE.items()
            for spelling in (name, name.lower())}

NOT_A_COMMAND = RespError("ERR Protocol error: expected an array of bulk strings")


def execute(s: Session, cmd: Any) -> Reply:
    """Run one command (a list of bytes, the name first) and return its reply."""
    if type(cmd) is not list or not cmd:
        return NOT_A_COMMAND
    for word in cmd:  # (a nested array or a number has no place in a command)
        if type(word) is not bytes:
            return NOT_A_COMMAND
    entry = COMMANDS.get(cmd[0]) or COMMANDS.get(cmd[0].upper())
    if entry is None:
        shown = " ".join(f"'{a.decode(errors='replace')}'" for a in cmd[1:4])
        return RespError(f"ERR unknown command '{cmd[0].decode(errors='replace')}', "
                         f"with args beginning with: {shown}")
    function, lengths = entry
    if len(cmd) not in lengths:
        return wrong_args(cmd[0].upper())
    return function(s, cmd)


def make_handler(db: Store) -> Callable[[greensrv.Connection], None]:
    def serve(conn: greensrv.Connection) -> None:
        """One client: a reply per command, in order, until EOF or QUIT."""
        session = Session(db, conn)
        put = conn.put
        for cmd in conn:
            put(execute(session, cmd))
            if session.quitting:
                break
    return serve


def make_server(host: str = "127.0.0.1", port: int = 6380) -> greensrv.Server:
    return greensrv.Server(handler=make_handler({}), filter=Resp(), host=host, port=port,
                           name="redis_lite")


#: The example as the ``greensrv`` command runs it: ``greensrv examples/redis_lite.py:server``.
#: Each worker has its own keys: run it with one (the default).
server = make_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="An in-memory subset of Redis (RESP2 and RESP3).")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=6380, help="TCP port (default %(default)s)")
    args = parser.parse_args(argv)
    make_server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
