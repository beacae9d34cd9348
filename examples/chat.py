"""Chat server: POE's shared-namespace pattern, with every line broadcast to the other clients.

POE::Component::Server::TCP suggests registering each client session in a shared hash from
``ClientConnected`` and removing it in ``ClientDisconnected``. greensrv runs those callbacks in
the client's own greenlet, so a plain dict keyed by ``conn.id`` is the namespace (no locks: all
greenlets share one thread and switch only when they wait). ``put`` never blocks, so one slow
reader cannot hold up a broadcast; a client that stops reading altogether is disconnected once
its backlog passes the server's ``output_limit``.

Protocol: every line you send reaches everyone else as ``<you> line``; ``/quit`` says goodbye.
Nicknames are the client's ``ip:port``.

    python examples/chat.py [--host 127.0.0.1] [--port 12345]

(``server.connections`` holds the same set of live connections; the explicit dict shows the POE
pattern and lets the room keep per-client state of its own.)

Both are per process: under ``greensrv examples/chat.py:server --workers 2`` each worker has its
own room, and a line reaches only the clients of the sender's worker. For one room across workers
and machines, see ``examples/chat_cluster.py`` (the same protocol, the room in Redis pub/sub).
"""

from __future__ import annotations

import argparse
import logging

import greensrv

log = logging.getLogger("chat")


class ChatRoom:
    """The shared namespace: live clients by connection id, and the three callbacks."""

    def __init__(self) -> None:
        self.clients: dict[int, greensrv.Connection] = {}

    def broadcast(self, sender: greensrv.Connection, message: str) -> None:
        """Queue ``message`` for every client but ``sender``; never blocks."""
        for conn in list(self.clients.values()):
            if conn is not sender:
                conn.put(message)

    def connected(self, conn: greensrv.Connection) -> None:
        nick = conn.data["nick"] = f"{conn.remote_ip}:{conn.remote_port}"
        conn.put(f"Welcome, {nick}. {len(self.clients)} other(s) here.")
        self.clients[conn.id] = conn
        self.broadcast(conn, f"* {nick} joined")
        log.info("%s joined", nick)

    def input(self, conn: greensrv.Connection, line: str) -> None:
        if line == "/quit":
            conn.put("B'bye!")
            conn.shutdown()  # POE's yield("shutdown"): the reply is flushed, then FIN
            return
        self.broadcast(conn, f"<{conn.data['nick']}> {line}")

    def disconnected(self, conn: greensrv.Connection) -> None:
        if self.clients.pop(conn.id, None) is not None:
            self.broadcast(conn, f"* {conn.data['nick']} left")
            log.info("%s left", conn.data["nick"])


def make_server(host: str = "127.0.0.1", port: int = 12345) -> greensrv.Server:
    room = ChatRoom()
    return greensrv.Server(
        host=host,
        port=port,
        client_connected=room.connected,
        client_input=room.input,
        client_disconnected=room.disconnected,
    )


#: The example as the ``greensrv`` command runs it: ``greensrv examples/chat.py:server``.
#: Under several workers each worker has its own room (``connections`` is per worker): run it
#: with one (the default), or run examples/chat_cluster.py, whose room is shared through Redis.
server = make_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Line-based chat server.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="TCP port (default %(default)s)")
    args = parser.parse_args(argv)
    make_server(args.host, args.port).serve_forever()


if __name__ == "__main__":
    main()
