"""The master's signal inbox: handlers only record a signal; the master's loop acts on it.

The master runs no hub (``workers.py``), so nothing would wake its ``poll`` when a signal
arrives between two turns: ``signal.set_wakeup_fd`` writes a byte to a pipe the loop polls, and
the loop then takes the recorded signals and acts on them outside any handler (gunicorn's
arbiter does the same, for the same reason: work in a handler can interrupt the loop anywhere).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence
from typing import Any

from gevent.monkey import get_original

__all__ = ["SignalInbox"]

#: The unpatched ``signal.signal``: the application may have monkey-patched it, and the master
#: runs no hub that gevent's version would need.
_signal = get_original("signal", "signal")


class SignalInbox:
    """Records ``signals`` between :meth:`install` and :meth:`restore`; :attr:`wake_fd` turns
    readable on each, and :meth:`take` gives them in the order they came."""

    def __init__(self, signals: Sequence[int]) -> None:
        self.signals = tuple(signals)
        self._received: list[int] = []
        self._previous: dict[int, Any] = {}
        self._previous_wakeup = -1
        self.wake_fd = self._wake_w = -1

    def install(self) -> None:
        self.wake_fd, self._wake_w = os.pipe()
        for fd in (self.wake_fd, self._wake_w):
            os.set_blocking(fd, False)
        self._previous = {sig: _signal(sig, self._record) for sig in self.signals}
        self._previous_wakeup = signal.set_wakeup_fd(self._wake_w)

    def restore(self) -> None:
        """The previous handlers and wake-up descriptor back; the pipe closed."""
        signal.set_wakeup_fd(self._previous_wakeup)
        for sig, handler in self._previous.items():
            _signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._close()

    def close_in_child(self) -> None:
        """In a forked worker: no wake-up descriptor, the pipe closed (it sets its own
        handlers)."""
        signal.set_wakeup_fd(-1)
        self._close()

    def take(self) -> list[int]:
        """The signals received since the last call, oldest first."""
        taken, self._received = self._received, []
        return taken

    def drain(self) -> None:
        """Empty the wake-up pipe: its bytes only woke the loop."""
        try:
            os.read(self.wake_fd, 4096)
        except BlockingIOError:
            pass

    def _record(self, signum: int, frame: Any) -> None:
        self._received.append(signum)

    def _close(self) -> None:
        for fd in (self.wake_fd, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self.wake_fd = self._wake_w = -1
