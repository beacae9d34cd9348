"""Delayed start: listen at once, accept nobody until a lengthy initialisation has finished.

POE's ``Concurrency`` documentation: start the server with ``Concurrency => 0`` so it accepts
no connections, do the slow set-up, then ``yield(set_concurrency => -1)``. greensrv has the
same two steps, ``concurrency=0`` and ``server.set_concurrency(-1)``. While the limit is 0 the
socket is already listening, so early clients are neither refused nor accepted: they wait in
the kernel's backlog and are served as soon as initialisation ends.

The initialisation runs in a greenlet of its own, spawned by the ``started`` callback (POE's
``Started``) while ``serve_forever()`` owns the main greenlet, so SIGTERM or Ctrl-C during it
still stops the server gracefully. Here it only sleeps for ``--init-seconds`` and then sets the
greeting, standing in for real data; a real server would load files or warm caches (CPU-bound
work would block the other greenlets: run it in ``gevent.get_hub().threadpool`` instead).

Protocol: the server greets with ``ready``, then answers each line with its length in
characters.

    python examples/delayed_start.py [--init-seconds 5] [--host 127.0.0.1] [--port 12345]
"""

from __future__ import annotations

import argparse
import logging

import gevent

import greensrv

log = logging.getLogger("delayed_start")


class App:
    """The state that needs initialising before any client can be served."""

    def __init__(self) -> None:
        self.greeting: str | None = None
        self.init: gevent.Greenlet | None = None

    def start_initialising(self, server: greensrv.Server, seconds: float) -> None:
        """``started`` callback: listening now, so initialise in the background."""
        self.init = gevent.spawn(self.initialise, server, seconds)

    def initialise(self, server: greensrv.Server, seconds: float) -> None:
        log.info("initialising for %.1f s; clients wait in the backlog", seconds)
        gevent.sleep(seconds)  # stands in for the lengthy work
        self.greeting = "ready"
        server.set_concurrency(-1)  # POE's yield(set_concurrency => -1)
        log.info("initialised; accepting clients")

    def handle(self, conn: greensrv.Connection) -> None:
        conn.put(self.greeting)
        for line in conn:
            conn.put(str(len(line)))


def make_server(app: App, host: str = "127.0.0.1", port: int = 12345,
                init_seconds: float = 5.0) -> greensrv.Server:
    return greensrv.Server(
        app.handle,
        host=host,
        port=port,
        concurrency=0,  # listening, but accepting nobody yet
        started=lambda server: app.start_initialising(server, init_seconds),
    )


#: The example as the ``greensrv`` command runs it: ``greensrv examples/delayed_start.py:server``.
server = make_server(App())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Server that accepts only after initialising.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=12345, help="TCP port (default %(default)s)")
    parser.add_argument("--init-seconds", type=float, default=5.0, metavar="SECONDS",
                        help="length of the simulated initialisation (default %(default)s)")
    args = parser.parse_args(argv)
    app = App()
    server = make_server(app, args.host, args.port, args.init_seconds)
    try:
        server.serve_forever()
    finally:
        if app.init is not None:
            app.init.kill()  # stopped during initialisation: nothing left to initialise for


if __name__ == "__main__":
    main()
