"""The master's PID file (``--pid FILE``): scripts run ``kill -HUP $(cat FILE)``, so it must name
the master that runs.

Rules: a file holding the PID of a live process (another master, most likely) is never
overwritten: claiming it fails with an error naming that PID. The file is written whole
(a temporary file renamed over it), so a reader never sees it half written. At exit it is
removed only if it still holds this process's PID: a master that failed to start, or one that
drains while its successor already runs, never deletes a file that is not its own.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PidFile", "PidFileBusy"]


class PidFileBusy(RuntimeError):
    """The PID file names a process that is still running."""


class PidFile:
    """``claim()`` at start, ``release()`` at exit (idempotent)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.pid = os.getpid()

    def claim(self) -> None:
        holder = self.holder()
        if holder is not None and holder != self.pid and _alive(holder):
            raise PidFileBusy(f"{self.path} holds PID {holder}, a running process (another "
                              "master?); stop it, or remove the file if it is not greensrv")
        temporary = self.path.with_name(f".{self.path.name}.{self.pid}")
        temporary.write_text(f"{self.pid}\n")
        os.replace(temporary, self.path)

    def holder(self) -> int | None:
        """The PID the file holds, or None (no file, or not a number)."""
        try:
            return int(self.path.read_text().strip())
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self.holder() == self.pid:
            try:
                self.path.unlink()
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True
