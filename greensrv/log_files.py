"""Log files that SIGUSR1 reopens, as nginx and gunicorn do for logrotate.

logrotate renames a log file, then signals the server; the server must then write to a new
file of the old name, or it keeps filling the renamed one. Anything holding a log file
registers a reopen function with :func:`on_reopen`; SIGUSR1 to the process that owns the
listeners (the master, which tells its workers, or a single server) runs every registered
function through :func:`reopen_all`. A file that cannot be reopened is logged and keeps its old
stream: rotation must never stop a server.

:class:`ReopeningFileHandler` is such a file for :mod:`logging`; the command's
``--access-log PATH`` uses one for the ``greensrv.access`` logger.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

__all__ = ["ACCESS_LOGGER", "LineHandler", "ReopeningFileHandler", "access_log_handler",
           "direct_handler", "on_reopen", "reopen_all", "route_access_log"]

log = logging.getLogger("greensrv")

#: The logger every connection-log line goes through.
ACCESS_LOGGER = "greensrv.access"

_reopeners: list[Callable[[], None]] = []

#: The connection log's own formatter: the line as it is.
_MESSAGE_ONLY = logging.Formatter("%(message)s")


def on_reopen(reopen: Callable[[], None]) -> Callable[[], None]:
    """Run ``reopen()`` on each SIGUSR1; returns a function that unregisters it."""
    _reopeners.append(reopen)

    def forget() -> None:
        if reopen in _reopeners:
            _reopeners.remove(reopen)
    return forget


def reopen_all() -> int:
    """Run every registered reopen function; returns how many succeeded."""
    done = 0
    for reopen in list(_reopeners):
        try:
            reopen()
            done += 1
        except Exception as exc:
            log.error("greensrv: cannot reopen a log file (it keeps the old one): %s", exc)
    return done


class LineHandler:
    """Marks a handler whose records are their message as it is, one per line, to its
    ``stream`` under its ``lock``: the connection log may write such a line itself
    (:func:`direct_handler`), without making a LogRecord per connection."""


class ReopeningFileHandler(LineHandler, logging.FileHandler):
    """A FileHandler that SIGUSR1 closes and opens again under the same name."""

    def __init__(self, filename: str, encoding: str = "utf-8") -> None:
        super().__init__(filename, mode="a", encoding=encoding)
        self._forget = on_reopen(self.reopen)

    def reopen(self) -> None:
        stream = self._open()  # first: if the new file cannot be opened, keep the old one
        self.acquire()
        try:
            old, self.stream = self.stream, stream
        finally:
            self.release()
        if old is not None:
            old.close()

    def close(self) -> None:
        self._forget()
        super().close()


class _StandardOutput(LineHandler, logging.StreamHandler):
    """The connection log on standard output (``--access-log -``)."""


def direct_handler(logger: logging.Logger) -> logging.Handler | None:
    """The handler to write a line to directly, when it is the only place ``logger``'s records
    go and nothing would read them but its ``%(message)s`` formatter: no filters, no other
    handler, no propagation, level INFO (as :func:`route_access_log` sets it up). None
    otherwise: the line then goes through ``logger`` as a record, wherever logging sends it."""
    handlers = logger.handlers
    if len(handlers) != 1 or logger.propagate or logger.filters or logger.disabled or \
            logger.level != logging.INFO or logging.root.manager.disable >= logging.INFO:
        return None
    handler = handlers[0]
    if not isinstance(handler, LineHandler) or handler.filters or \
            handler.level > logging.INFO or handler.formatter is not _MESSAGE_ONLY:
        return None
    return handler


def access_log_handler(target: str) -> logging.Handler:
    """A handler for the connection log: ``"-"`` is standard output, else a file to append to
    (reopened on SIGUSR1). Raises OSError naming the file when it cannot be opened."""
    if target == "-":
        handler: logging.Handler = _StandardOutput(sys.stdout)
    else:
        try:
            handler = ReopeningFileHandler(target)
        except OSError as exc:
            raise OSError(f"--access-log {target!r}: {exc.strerror or exc}") from exc
    handler.setFormatter(_MESSAGE_ONLY)
    return handler


def route_access_log(target: str) -> logging.Handler:
    """Send the connection log (only) to ``target``; returns the handler (to remove later)."""
    handler = access_log_handler(target)
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # its lines go to their own place, not into the server's log
    return handler
