"""Operations for a single-process server: its admin endpoint and agent port, in its own hub.

The endpoint (:class:`~greensrv.admin.OpsEndpoint`) is driven by one greenlet that waits on its
descriptor; metrics come from the server's own ``statistics()`` and its
:class:`~greensrv.connection_ends.ConnectionEnds`, and the application's metrics from
prometheus_client's default registry (one process: no multiprocess mode).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
from gevent.select import select as cooperative_select

from . import health
from .admin import OpsEndpoint
from .metrics import GreensrvCollector, exposition, snapshot_of

__all__ = ["ServerOperations"]

log = logging.getLogger("greensrv")


class ServerOperations:
    """The admin endpoint and agent port of one single-process ``server``.

    ``phase`` is one of :data:`greensrv.health.PHASES`; the server moves it.
    """

    def __init__(self, server: Any, ends: Any, admin: str | None, agent: str | None) -> None:
        self.server = server
        self.ends = ends
        self.phase = "starting"
        self.drain_until: float | None = None
        self._collector = GreensrvCollector(self._totals, lambda: 1, lambda: 0, lambda: 0)
        self.endpoint = OpsEndpoint(self, admin, agent)
        self._glet = gevent.spawn(self._run)

    # -- Operations ----------------------------------------------------------------------------
    def not_ready_reason(self) -> str | None:
        left = None if self.drain_until is None else max(0.0, self.drain_until - time.monotonic())
        return health.not_ready_reason(self.phase, left)

    def agent_line(self) -> str:
        server = self.server
        capacity = None if server.concurrency < 0 else server.concurrency
        return health.agent_line(self.phase, server.statistics().live_connections, capacity)

    def metrics_page(self) -> bytes:
        return exposition(self._collector, None)

    def _totals(self) -> dict[str, Any]:
        from .metrics import MetricsBook

        book = MetricsBook()
        book.update(0, snapshot_of(self.server.statistics(), self.ends))
        return book.totals()

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        endpoint = self.endpoint
        while True:
            cooperative_select([endpoint], [], [], endpoint.timeout())
            try:
                endpoint.step()
            except Exception:  # a bug here must not end the endpoint's loop for good
                log.exception("greensrv: admin endpoint error")

    def close(self) -> None:
        self._glet.kill()
        self.endpoint.close()
