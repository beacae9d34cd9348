"""Character generator (RFC 864) streamed with ``client_flushed``, stopped by SIGUSR1.

POE's ``ClientFlushed`` documentation shows the streaming pattern: put one chunk, and each time
the output buffer has been fully written, put the next. The server therefore holds at most one
chunk per client however fast or slow the client reads, and a client that stops reading stops
the generator instead of growing memory.

POE's ``Alias`` example shuts the server down from a SIGUSR1 handler that posts ``shutdown``;
here the signal handler calls ``server.stop()`` (gevent runs it in a greenlet of its own, after
the OS-level handler has returned). SIGTERM and Ctrl-C stop it the same way through
``serve_forever()``. Chargen clients never finish by themselves, so the default
``--shutdown-timeout`` is 0: stopping goes straight to ending each connection's input, flushing
the chunk in flight and closing.

    python examples/chargen.py [--host 127.0.0.1] [--port 12345]
    kill -USR1 <pid>
"""

from __future__ import annotations

import argparse
import logging
import signal

import gevent

import greensrv
from greensrv.filters import Stream

log = logging.getLogger("chargen")

#: RFC 864's pattern: 95 printable ASCII characters, 72 per line, each line starting one further.
PRINTABLE = bytes(range(32, 127))
LINE_WIDTH = 72
LINES = [
    (PRINTABLE * 2)[i : i + LINE_WIDTH] + b"\r\n" for i in range(len(PRINTABLE))
]

#: Lines per chunk: about 4.6 KiB, big enough to keep a socket busy, small enough that holding
#: one per client is cheap.
CHUNK_LINES = 64


def put_next_chunk(conn: greensrv.Connection) -> None:
    """Queue the next chunk of the pattern: the ``client_flushed`` callback."""
    first = conn.data.get("next_line", 0)
    conn.data["next_line"] = (first + CHUNK_LINES) % len(LINES)
    conn.put(b"".join(LINES[(first + k) % len(LINES)] for k in range(CHUNK_LINES)))


def chargen(conn: greensrv.Connection) -> None:
    """Start the stream, then read and discard input (as RFC 864 says) until EOF."""
    put_next_chunk(conn)
    for _ in conn:
        pass


def stop_on_signal(server: greensrv.Server) -> None:
    log.info("SIGUSR1: shutting down")
    server.stop()


def make_server(host: str = "127.0.0.1", port: int = 12345,
                shutdown_timeout: float = 0.0) -> greensrv.Server:
    return greensrv.Server(
        chargen,
        host=host,
        port=port,
        filter=Stream(),
        client_flushed=put_next_chunk,
        shutdown_timeout=shutdown_timeout,
    )


#: The example as the ``greensrv`` command runs it: ``greensrv examples/chargen.py:server``.
server = make_server()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="RFC 864 character generator.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="TCP port (default %(default)s)")
    parser.add_argument("--shutdown-timeout", type=float, default=0.0, metavar="SECONDS",
                        help="how long stop() lets clients finish by themselves "
                             "(default %(default)s)")
    args = parser.parse_args(argv)
    server = make_server(args.host, args.port, args.shutdown_timeout)
    usr1 = gevent.signal_handler(signal.SIGUSR1, stop_on_signal, server)
    try:
        server.serve_forever()
    finally:
        usr1.cancel()


if __name__ == "__main__":
    main()
