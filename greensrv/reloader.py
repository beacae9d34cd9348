"""``--reload`` (development): a change to a ``.py`` file reloads the application as HUP does.

``watchfiles`` (inotify on Linux) watches the application's directory in a thread of the master;
a change sends this process SIGHUP, so the reload takes the one path every reload takes: the
master imports the new code and forks new workers from it, and only once they accept are the old
ones stopped; a change that does not import is logged in one line and the old code keeps
serving. The thread only ever sends a signal: the master's loop stays single-threaded.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

__all__ = ["Reloader"]

log = logging.getLogger("greensrv")


class Reloader:
    """Watches ``directory`` from ``start()`` until ``stop()``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="greensrv-reload", daemon=True)

    def start(self) -> None:
        """``ValueError`` if ``watchfiles`` is not installed (it is an optional dependency)."""
        try:
            import watchfiles  # noqa: F401  (only --reload needs it)
        except ImportError:
            raise ValueError("--reload needs the watchfiles package: "
                             "pip install 'greensrv[reload]'") from None
        self._thread.start()
        log.info("greensrv: --reload: watching %s for changes to .py files", self.directory)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        import watchfiles

        master = os.getpid()
        for changes in watchfiles.watch(self.directory, watch_filter=watchfiles.PythonFilter(),
                                        stop_event=self._stop, raise_interrupt=False):
            names = sorted({Path(path).name for _, path in changes})
            log.info("greensrv: --reload: %s changed: reloading", ", ".join(names))
            os.kill(master, signal.SIGHUP)
