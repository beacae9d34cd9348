"""Operations under workers: the master's admin endpoint and agent port, and the metrics its
workers report.

The master runs no hub: its supervision loop waits on :meth:`MasterOperations.fileno` along with
its workers' pipes and calls :meth:`step` when it is readable (``greensrv.admin``). Workers send
``metrics {json}`` lines over their status pipe (:func:`report_line`); the master keeps them in a
:class:`~greensrv.metrics.MetricsBook`. The application's prometheus_client metrics come from
the multiprocess directory set up before the first fork.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import health
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


class MasterOperations:
    """The master's side. ``phase`` and ``serving`` are questions to the master: its phase
    (``greensrv.health.PHASES``) and how many workers serve now."""

    @classmethod
    def of(cls, app: Any, phase: Callable[[], str],
           serving: Callable[[], int]) -> MasterOperations | None:
        """The operations of ``app`` (a ``workers.Servable``), or None when it asks for none."""
        if app.admin is None and app.agent is None:
            return None
        return cls(app.admin, app.agent, app.concurrency, phase, serving)

    def __init__(self, admin: str | None, agent: str | None, concurrency: int,
                 phase: Callable[[], str], serving: Callable[[], int]) -> None:
        self.book = MetricsBook()
        self._phase = phase
        self._serving = serving
        self._concurrency = concurrency
        self.drain_until: float | None = None
        self._multiprocess: tuple[str, bool] | None = None
        if admin is not None:
            self._multiprocess = setup_multiprocess()
        self._collector = GreensrvCollector(self.book.totals, serving,
                                            lambda: self.book.worker_restarts,
                                            lambda: self.book.reloads)
        try:
            self.endpoint = OpsEndpoint(self, admin, agent)
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
        return self.endpoint.fileno()

    def timeout(self) -> float | None:
        return self.endpoint.timeout()

    def step(self) -> None:
        self.endpoint.step()

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
        self.endpoint.close()
        self._cleanup()

    def _cleanup(self) -> None:
        if self._multiprocess is not None:
            cleanup(*self._multiprocess)
