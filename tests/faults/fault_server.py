"""A greensrv server in its own process, so the fault suite can measure its RSS and CPU.

    python fault_server.py '{"app": "echo", "options": {...}, "nofile": 256}'

It prints one JSON line ``{"event": "ready", "port": N, "pid": N}`` once listening, then
answers commands read from stdin, one per line, with one JSON line each:

- ``stats``: ``server.statistics()`` plus the client errors seen, counted by type, and the
  first few messages of each type, and the process's live greenlets and open descriptors;
- ``stop``: a graceful ``stop()``; the process then exits 0.

SIGTERM stops it gracefully too (``serve_forever``). Logs go to stderr (the test sends them to a
file and counts lines). Apps: ``echo`` (POE-style echo), ``crash`` (``client_input`` raising
``ValueError`` on lines starting with ``crash``, echoing the rest), ``die`` (a handler that
raises on its first line). With ``"report_errors": false`` the server's default ``client_error``
(the rate-limited log) is used instead of the counting one. ``"tls": [CERT, KEY]`` serves TLS;
``"also": {...}`` runs a second, plaintext server of the same app with those options in the same
process (its port is ``port2`` in the ready line, its statistics ``also`` in ``stats``).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import resource
import sys

import gevent
import greenlet
from gevent.fileobject import FileObjectPosix

import greensrv
from greensrv.tls import server_context

#: Messages kept per error type for the test to check (the rest are only counted).
KEEP_MESSAGES = 5


def main() -> None:
    spec = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    errors: dict[str, list] = {}

    def client_error(conn, exc):
        entry = errors.setdefault(type(exc).__name__, [0, []])
        entry[0] += 1
        if len(entry[1]) < KEEP_MESSAGES:
            entry[1].append(str(exc))

    def echo_input(conn, line):
        conn.put(line)

    def crash_input(conn, line):
        if line.startswith("crash"):
            raise ValueError("crash requested by the client")
        conn.put(line)

    def die(conn):
        conn.get()
        raise ValueError("handler died on its first line")

    app = spec.get("app", "echo")

    def make(options: dict) -> greensrv.Server:
        if spec.get("report_errors", True):
            options["client_error"] = client_error
        if app == "echo":
            return greensrv.Server(client_input=echo_input, **options)
        if app == "crash":
            return greensrv.Server(client_input=crash_input, **options)
        if app == "die":
            return greensrv.Server(die, **options)
        raise SystemExit(f"unknown app {app!r}")

    options = dict(spec.get("options", {}))
    if spec.get("tls"):
        options["ssl_context"] = server_context(*spec["tls"])
    server = make(options)
    server.start()
    also = make(dict(spec["also"])) if "also" in spec else None
    if also is not None:
        also.start()
    nofile = spec.get("nofile")
    if nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    out = sys.stdout

    def say(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    def commands() -> None:
        stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)
        for raw in stdin:
            command = raw.decode().strip()
            if command == "stats":
                stats = dataclasses.asdict(server.statistics())
                if also is not None:
                    stats["also"] = dataclasses.asdict(also.statistics())
                stats["errors"] = {k: {"count": v[0], "messages": v[1]}
                                   for k, v in errors.items()}
                stats["connections"] = len(server.connections)
                stats["greenlets"] = sum(1 for g in gc.get_objects()
                                         if isinstance(g, greenlet.greenlet) and g and not g.dead)
                try:
                    stats["fds"] = len(os.listdir("/proc/self/fd"))
                except OSError:  # out of descriptors (scenario 5): listing needs one too
                    stats["fds"] = None
                say({"event": "stats", **stats})
            elif command == "stop":
                if also is not None:
                    also.stop()
                gevent.spawn(server.stop)
                return
        if also is not None:
            also.stop()
        server.stop()  # stdin closed: the test is gone

    gevent.spawn(commands)
    say({"event": "ready", "port": server.address[1], "pid": _pid(),
         "port2": also.address[1] if also is not None else None})
    server.serve_forever()
    say({"event": "stopped"})


def _pid() -> int:
    return os.getpid()


if __name__ == "__main__":
    main()
