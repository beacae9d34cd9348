"""What a person sees when a server starts: a log on stderr, and start-up errors in one line.

``serve_forever()`` is the entry point of small programs that never configure :mod:`logging`;
without a handler Python would print only warnings, so a server would start and stop in
silence. :func:`default_logging` gives such a program a plain stderr log for as long as it
serves, and steps aside as soon as the application has configured logging itself.

A start-up error (an address in use, a path that cannot be bound) is a :class:`StartupError`
whose message names the address. ``start()`` raises it for programs that handle it;
``serve_forever()`` in the main thread turns it into ``SystemExit`` with that one line, so a
person reads the cause instead of a traceback through greensrv's internals.
"""

from __future__ import annotations

import errno
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import StartupError

__all__ = ["default_logging", "exit_on_startup_error", "format_address", "listen_error"]

#: The format of the fallback log: time, the logger (greensrv, or the application's own) and
#: the message; enough to follow a server by eye, nothing a person has to decode.
LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


def logging_configured() -> bool:
    """True when the application (or a test runner) has given logging somewhere to go."""
    return bool(logging.getLogger().handlers) or logging.getLogger("greensrv").hasHandlers()


@contextmanager
def default_logging() -> Iterator[None]:
    """While it is active, log INFO and above to stderr, unless logging is already configured.

    The handler goes on the root logger, as ``logging.basicConfig(level=INFO)`` would put it, so
    the application's own loggers are heard too; both are undone on exit, leaving logging as it
    was found.
    """
    if logging_configured():
        yield
        return
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    level = root.level
    root.addHandler(handler)
    if level == logging.WARNING:  # Python's default: an application that asked for less or
        root.setLevel(logging.INFO)  # more keeps what it asked for
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@contextmanager
def exit_on_startup_error() -> Iterator[None]:
    """In the main thread, turn a :class:`StartupError` into ``SystemExit`` with its message.

    The interpreter prints that one line to stderr and exits with status 1; the original error
    is the ``SystemExit``'s ``__cause__``. Elsewhere (a thread, which ``SystemExit`` would end
    silently) the error propagates unchanged.
    """
    try:
        yield
    except StartupError as exc:
        if threading.current_thread() is not threading.main_thread():
            raise
        raise SystemExit(f"greensrv: {exc.strerror}") from exc


def format_address(address: Any) -> str:
    """``host:port``, ``[v6]:port``, ``unix:/path`` or ``fd:N``: the forms ``listen`` takes."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if isinstance(address, int):
        return f"fd:{address}"
    if isinstance(address, str):
        return f"unix:{address}"
    return repr(address)


#: What the usual bind failures mean, said as a person would look for them.
_HINTS = {
    "EADDRINUSE": "address already in use (another process is listening there; "
                  "`ss -ltnp` shows which)",
    "EACCES": "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE; "
              "a unix path needs a writable directory)",
    "EADDRNOTAVAIL": "address not available (no interface on this machine has it)",
}


def listen_error(kind: str, value: Any, exc: OSError) -> StartupError:
    """A :class:`StartupError` that names the ``listen`` entry that could not be opened."""
    where = format_address(value if kind != "socket" else _socket_name(value))
    errname = _errno_name(exc.errno)
    reason = _HINTS.get(errname) or exc.strerror or str(exc)
    error = StartupError(exc.errno or 0, f"cannot listen on {where}: {reason}")
    error.address = value if kind != "socket" else None
    return error


def _errno_name(number: int | None) -> str:
    return errno.errorcode.get(number or 0, "")


def _socket_name(sock: Any) -> Any:
    try:
        return sock.getsockname()
    except OSError:
        return sock
