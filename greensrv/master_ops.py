"""Operations under workers: the master's admin endpoint and agent port, the metrics its
workers report, and the drain before a stop.

The master runs no hub: its supervision loop waits on :meth:`MasterOperations.fileno` (when
there is an endpoint) along with its workers' pipes, and calls :meth:`step` on every turn
(``greensrv.admin``). Workers send ``metrics {json}`` lines over their status pipe (their
server's ``metrics_report()``, every heartbeat); the master keeps them in a
:class:`~greensrv.metrics.MetricsBook`. The application's prometheus_client metrics come from
the multiprocess directory set up before the first fork.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from . import health, systemd
from .admin import OpsEndpoint
from .metrics import (
    GreensrvCollector,
    MetricsBook,
    cleanup,
    decode_report,
    exposition,
    setup_multiprocess,
    worker_ended,
)

__all__ = ["MasterOperations"]

log = logging.getLogger("greensrv")


class MasterOperations:
    """The master's side. ``phase`` and ``serving`` are questions to the master: its phase
    (``greensrv.health.PHASES``) and how many workers serve now."""

    def __init__(self, app: Any, phase: Callable[[], str], serving: Callable[[], int]) -> None:
        """``app`` is the master's ``workers.Servable``; ``phase`` and ``serving`` ask the
        master where it is and how many workers serve now."""
        self.name = app.name
        self.drain_delay: float = app.drain_delay
        self.book = MetricsBook()
        self._phase = phase
        self._serving = serving
        self._concurrency: int = app.concurrency
        #: When the drain ends (time.monotonic()), from the first TERM/INT; None before.
        self.drain_until: float | None = None
        self._multiprocess: tuple[str, bool] | None = None
        self.endpoint: OpsEndpoint | None = None
        if app.admin is None and app.agent is None:
            return
        if app.admin is not None:
            self._multiprocess = setup_multiprocess()
        self._collector = GreensrvCollector(self.book.totals, serving,
                                            lambda: self.book.worker_restarts,
                                            lambda: self.book.reloads)
        try:
            self.endpoint = OpsEndpoint(self, app.admin, app.agent)
        except BaseException:
            self._cleanup()
            raise

    # -- Operations ----------------------------------------------------------------------------
    def not_ready_reason(self) -> str | None:
        left = None if self.drain_until is None else max(0.0, self.drain_until - time.monotonic())
        return health.not_ready_reason(self._phase(), left)

    def agent_line(self) -> str:
        capacity = None if self._concurrency < 0 else self._concurrency * self._serving()
        return health.agent_line(self._phase(), self.book.totals()["live"], capacity)

    def metrics_page(self) -> bytes:
        path = self._multiprocess[0] if self._multiprocess is not None else None
        return exposition(self._collector, path)

    # -- what the master tells it --------------------------------------------------------------
    def fileno(self) -> int:
        """The endpoint's descriptor to wait on; -1 without one."""
        return self.endpoint.fileno() if self.endpoint is not None else -1

    def timeout(self) -> float | None:
        return self.endpoint.timeout() if self.endpoint is not None else None

    def step(self) -> None:
        if self.endpoint is not None:
            self.endpoint.step()

    def begin_drain(self, signal_name: str, workers: int) -> None:
        """The first TERM/INT with a drain_delay: not ready from now on, stop when it ends."""
        delay = self.drain_delay
        self.drain_until = time.monotonic() + delay
        log.info("%s: master got %s: draining for %g s (not ready, serving as before), then "
                 "stopping %d worker(s) gracefully", self.name, signal_name, delay, workers)
        systemd.notify(f"STATUS={self.name}: draining for {delay:g} s, then stopping")

    def drain_over(self, now: float) -> bool:
        return self.drain_until is not None and now >= self.drain_until

    def reported(self, pid: int, payload: str) -> None:
        snapshot = decode_report(payload)
        if snapshot is not None:
            self.book.update(pid, snapshot)

    def worker_gone(self, pid: int) -> None:
        """Worker ``pid`` was reaped: its counts join the ended workers' totals."""
        self.book.retire(pid)
        if self._multiprocess is not None:
            worker_ended(self._multiprocess[0], pid)

    def reloaded(self) -> None:
        self.book.reloads += 1

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close()
        self._cleanup()

    def close_in_worker(self) -> None:
        """In a fresh worker: close its copies of the endpoint's sockets (else a client the
        master drops would never see its connection end), keep the master's files."""
        if self.endpoint is not None:
            self.endpoint.close()
            self.endpoint = None

    def _cleanup(self) -> None:
        if self._multiprocess is not None:
            cleanup(*self._multiprocess)
