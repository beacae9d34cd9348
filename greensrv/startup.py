"""What a person sees when a server starts: a log on stderr, and start-up errors in one line.

``serve_forever()`` is the entry point of small programs that never configure :mod:`logging`;
without a handler Python would print only warnings, so a server would start and stop in
silence. :func:`default_logging` gives such a program a plain stderr log for as long as it
serves, and steps aside as soon as the application has configured logging itself.

A start-up error (an address in use, a path that cannot be bound) is a :class:`StartupError`
whose message names the address, raised by ``start()`` and ``serve_forever()`` alike, so a
program can catch it. Raised through ``serve_forever()`` and left uncaught, it is printed as that
one line instead of a traceback through greensrv's internals (:func:`brief_startup_errors`).
"""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .errors import StartupError

__all__ = ["brief_startup_errors", "default_logging", "format_address", "listen_error"]

#: The format of the fallback log: time, the logger (greensrv, or the application's own) and
#: the message; enough to follow a server by eye, nothing a person has to decode.
LOG_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
#: The same under a master: several processes write to one stderr, so each line names its PID.
LOG_FORMAT_WITH_PID = "%(asctime)s [%(process)d] %(levelname)s [%(name)s] %(message)s"


def logging_configured() -> bool:
    """True when the application (or a test runner) has given logging somewhere to go."""
    return bool(logging.getLogger().handlers) or logging.getLogger("greensrv").hasHandlers()


@contextmanager
def default_logging(with_pid: bool = False) -> Iterator[None]:
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
    handler.setFormatter(logging.Formatter(LOG_FORMAT_WITH_PID if with_pid else LOG_FORMAT))
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
def brief_startup_errors() -> Iterator[None]:
    """Let a :class:`StartupError` through, marked to print as one line if nobody catches it.

    The error propagates unchanged (``except OSError`` still works); only if it reaches the top
    of the program uncaught does the chained ``sys.excepthook`` installed here print
    ``greensrv: <message>`` instead of the traceback (the exit status is 1, as for any uncaught
    error). Every other exception goes to the previous hook untouched.
    """
    try:
        yield
    except StartupError as exc:
        exc.brief = True
        _install_excepthook()
        raise


def _install_excepthook() -> None:
    previous = sys.excepthook
    if getattr(previous, "greensrv_brief", False):
        return  # installed already: never stack

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        if isinstance(value, StartupError) and value.brief:
            sys.stderr.write(f"greensrv: {value.strerror}\n")
            sys.stderr.flush()
            return
        previous(kind, value, tb)

    excepthook.greensrv_brief = True  # type: ignore[attr-defined]
    sys.excepthook = excepthook


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
