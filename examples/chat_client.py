"""chat_client: a reconnecting client for examples/chat.py, built on greensrv.Client.

POE::Component::Client::TCP's chat client, rebuilt: ``server_input`` shows each line the
server sends, ``connected``/``disconnected``/``connect_error`` say what happens, and
``retry=greensrv.Backoff(...)`` reconnects when the server goes away or is not up yet (POE
leaves that to a hand-written ``delay(reconnect => ...)``). Lines typed on standard input are
sent to the room; end of input (Ctrl-D) leaves it.

    python examples/chat.py --port 12345 &
    python examples/chat_client.py [--host 127.0.0.1] [--port 12345]
"""

from __future__ import annotations

import argparse
import logging
import sys

from gevent.fileobject import FileObject

import greensrv

log = logging.getLogger("chat_client")

#: Reconnect quickly at first (a restarting chat server is back within a second or two), and
#: never wait more than ten seconds: a person is watching.
RETRY = greensrv.Backoff(initial=0.5, maximum=10.0)


def show(conn: greensrv.Connection, line: str) -> None:
    log.info("%s", line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A reconnecting client for examples/chat.py.")
    parser.add_argument("--host", default="127.0.0.1", help="chat server (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="its port (default %(default)s)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    client = greensrv.Client(
        (args.host, args.port), server_input=show, retry=RETRY, name="chat_client",
        connected=lambda conn: log.info("* connected to %s:%s", *conn.remote_address),
        disconnected=lambda conn: log.info("* disconnected"),
        connect_error=lambda client, exc: log.info("* %s; retrying", exc))
    client.start()
    stdin = FileObject(sys.stdin.fileno(), "rb", close=False)  # cooperative: the hub runs on
    for raw in stdin:
        line = raw.decode(errors="replace").rstrip("\r\n")
        conn = client.connection
        if conn is None:
            log.info("* not connected: %r not sent", line)
        else:
            conn.put(line)
    client.stop()
    client.join()


if __name__ == "__main__":
    main()
