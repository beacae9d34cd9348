"""Log files reopened on SIGUSR1, as nginx and gunicorn do for logrotate.

Every :class:`logging.FileHandler` the process has (``--log-file``, a connection log, the
application's own) is reopened at its path: after logrotate renames a file, the next line goes
to a new file of that name. A file joins simply by being written through a ``FileHandler``;
nothing to register. Which process reopens: the master (or the single-process server) on the
signal, and each worker when its master tells it.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["file_handlers", "reopen_log_files"]

log = logging.getLogger("greensrv")


def file_handlers() -> list[logging.FileHandler]:
    """Every ``FileHandler`` attached to a logger of this process, each once."""
    known = logging.Logger.manager.loggerDict.values()
    loggers = [logging.getLogger(), *(lg for lg in known if isinstance(lg, logging.Logger))]
    found: dict[int, logging.FileHandler] = {}
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.FileHandler):
                found[id(handler)] = handler
    return list(found.values())


def reopen_log_files() -> int:
    """Reopen every log file at its path (a ``delay=True`` handler not yet opened stays so);
    returns how many were reopened. A file that cannot be opened (its directory is gone, no
    permission) is logged and its handler keeps writing where it did: logging never stops."""
    reopened = 0
    for handler in file_handlers():
        if handler.stream is None:
            continue
        try:  # what WatchedFileHandler opens after a rename, with the handler's own settings
            fresh: Any = open(handler.baseFilename, handler.mode,  # noqa: SIM115 (the handler owns it)
                         encoding=handler.encoding, errors=handler.errors)
        except OSError as exc:
            log.error("greensrv: cannot reopen the log file %s: %s", handler.baseFilename,
                      exc.strerror or exc)
            continue
        old = handler.setStream(fresh)  # under the handler's lock, flushing the old one first
        if old is not None:
            old.close()
        reopened += 1
    return reopened
