"""Where the connection log goes when the command routes it: ``--access-log PATH`` or ``-``.

The lines go through the logger ``greensrv.access``. The command gives that logger one handler
of its own (a ``logging.FileHandler``, so SIGUSR1 reopens it with every other log file:
``greensrv.logfiles``) and stops it from propagating into the server's log. While that handler
is the lines' only destination, :func:`direct_handler` lets the connection log write each line
to it without making a ``LogRecord`` per connection (docs/operations.md says what that saves).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["ACCESS_LOGGER", "LineHandler", "access_log_handler", "direct_handler",
           "route_access_log"]

#: The logger every connection-log line goes through.
ACCESS_LOGGER = "greensrv.access"

#: The connection log's own formatter: the line as it is.
_MESSAGE_ONLY = logging.Formatter("%(message)s")


class LineHandler:
    """Marks a handler whose records are their message as it is, one per line, to its
    ``stream`` under its ``lock``: the connection log may write such a line itself
    (:func:`direct_handler`)."""


class _File(LineHandler, logging.FileHandler):
    """The connection log's file (``--access-log PATH``)."""


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
    (OSError if it cannot be opened)."""
    handler: logging.Handler = (_StandardOutput(sys.stdout) if target == "-" else
                                _File(target, encoding="utf-8"))
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
