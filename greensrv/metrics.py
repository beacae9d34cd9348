"""The numbers behind ``GET /metrics``: one snapshot per serving process, totals over all of them.

How workers report (the choice documented in ``docs/operations.md``): greensrv's own numbers
travel over each worker's status pipe to its master, as a ``metrics {json}`` line every
heartbeat (at most a second apart) and once more when the worker stops gracefully. The master
keeps each worker's latest snapshot; when a worker ends, its snapshot is folded into the totals
of the workers that ended, so a total never goes backwards across a crash, a TTOU or a reload. A
worker killed outright (SIGKILL, a crash) loses what it counted after its last report: at most
one heartbeat's worth. Nothing is added to the per-record path: the counters are the ones the
server keeps anyway (``statistics()``) plus :class:`~greensrv.connection_ends.ConnectionEnds`.

The application's own ``prometheus_client`` metrics use that library's multiprocess mode under
workers (:func:`setup_multiprocess`), and its default registry in a single process.

``prometheus_client`` is imported only when an admin endpoint is made (the ``greensrv[metrics]``
extra); :func:`require_metrics_libraries` says so in one line when it is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from .connection_ends import DURATION_BUCKETS, END_WORDS

__all__ = ["MetricsBook", "exposition", "require_metrics_libraries", "setup_multiprocess",
           "snapshot_of"]

#: Counters summed over workers (snapshot key → metric name without ``greensrv_``/``_total``).
COUNTERS = {
    "accepted": ("connections_accepted", "Connections accepted (refused ones included)."),
    "bytes_in": ("bytes_received", "Bytes received from clients."),
    "bytes_out": ("bytes_sent", "Bytes sent to clients."),
    "proxy_rejected": ("proxy_rejected", "Connections closed for a missing, bad or untrusted "
                       "PROXY header."),
    "tls_failures": ("tls_handshake_failures", "Failed or timed-out TLS handshakes."),
}
#: The environment variable prometheus_client's multiprocess mode reads.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The multiprocess directory this process made (removed when its master stops).
_own_dir: str | None = None


def require_metrics_libraries(option: str) -> None:
    """Raise ImportError naming ``option`` and the extra when h11 or prometheus_client lack."""
    missing = []
    for module in ("h11", "prometheus_client"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise ImportError(f"{option} needs {' and '.join(missing)}: "
                          "pip install 'greensrv[metrics]'")


def snapshot_of(statistics: Any, ends: Any) -> dict[str, Any]:
    """One serving process's numbers: its ``statistics()`` and its ConnectionEnds."""
    snap = {key: getattr(statistics, key) for key in COUNTERS}
    snap["live"] = statistics.live_connections
    if ends is not None:
        snap.update(ends.snapshot())
    return snap


def encode_report(snapshot: dict[str, Any]) -> bytes:
    """The status-pipe line a worker sends (well under PIPE_BUF: one atomic write)."""
    return b"metrics " + json.dumps(snapshot, separators=(",", ":")).encode() + b"\n"


def decode_report(text: str) -> dict[str, Any] | None:
    """The snapshot in a ``metrics {json}`` line's payload, or None if it is not one."""
    try:
        snap = json.loads(text)
    except ValueError:
        return None
    return snap if isinstance(snap, dict) else None


class MetricsBook:
    """The master's sums: the latest snapshot of each live worker, plus everything the ended
    workers had reported, plus the master's own counters (restarts, reloads)."""

    def __init__(self) -> None:
        self.live: dict[int, dict[str, Any]] = {}
        self.retired: dict[str, Any] = _empty()
        self.worker_restarts = 0
        self.reloads = 0

    def update(self, pid: int, snapshot: dict[str, Any]) -> None:
        self.live[pid] = snapshot

    def retire(self, pid: int) -> None:
        """Worker ``pid`` ended: its last counts stay in the totals, its live gauge goes."""
        snap = self.live.pop(pid, None)
        if snap is not None:
            _add(self.retired, snap)

    def totals(self) -> dict[str, Any]:
        total = _empty()
        _add(total, self.retired)
        live = 0
        for snap in self.live.values():
            _add(total, snap)
            live += int(snap.get("live", 0))
        total["live"] = live
        return total


def _empty() -> dict[str, Any]:
    snap: dict[str, Any] = dict.fromkeys(COUNTERS, 0)
    snap.update(ends=[0] * len(END_WORDS), buckets=[0] * (len(DURATION_BUCKETS) + 1),
                duration_sum=0.0)
    return snap


def _add(into: dict[str, Any], snap: dict[str, Any]) -> None:
    for key in COUNTERS:
        into[key] += int(snap.get(key, 0))
    for key in ("ends", "buckets"):
        values = list(snap.get(key) or ())
        values += [0] * (len(into[key]) - len(values))
        into[key] = [a + int(b) for a, b in zip(into[key], values, strict=False)]
    into["duration_sum"] += float(snap.get("duration_sum", 0.0))


class GreensrvCollector:
    """A prometheus_client collector of the ``greensrv_*`` families (docs/operations.md)."""

    def __init__(self, totals: Callable[[], dict[str, Any]], workers: Callable[[], int],
                 restarts: Callable[[], int], reloads: Callable[[], int]) -> None:
        self._totals = totals
        self._workers = workers
        self._restarts = restarts
        self._reloads = reloads

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        total = self._totals()
        yield GaugeMetricFamily("greensrv_connections", "Live connections, over all workers.",
                                value=total["live"])
        for key, (name, help_text) in COUNTERS.items():
            yield CounterMetricFamily(f"greensrv_{name}", help_text, value=total[key])
        closed = CounterMetricFamily("greensrv_connections_closed", "Connections ended, by how "
                                     "they ended (the connection log's end word).",
                                     labels=["reason"])
        for word, n in zip(END_WORDS, total["ends"], strict=True):
            closed.add_metric([word], n)
        yield closed
        yield GaugeMetricFamily("greensrv_workers", "Processes serving clients.",
                                value=self._workers())
        yield CounterMetricFamily("greensrv_worker_restarts", "Workers replaced after they "
                                  "died.", value=self._restarts())
        yield CounterMetricFamily("greensrv_reloads", "Reloads completed.",
                                  value=self._reloads())
        cumulative, buckets = 0, []
        for bound, n in zip((*map(_bound, DURATION_BUCKETS), "+Inf"), total["buckets"],
                            strict=True):
            cumulative += n
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily("greensrv_connection_duration_seconds", "How long "
                                    "connections lived, accept to close.", buckets=buckets,
                                    sum_value=total["duration_sum"])


def _bound(value: float) -> str:
    return repr(float(value))


def exposition(collector: GreensrvCollector, multiprocess_dir: str | None) -> bytes:
    """The whole /metrics page: greensrv's families, then the application's metrics (from the
    workers' multiprocess files, or this process's default registry)."""
    from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

    ours = CollectorRegistry(auto_describe=False)
    ours.register(collector)
    page = generate_latest(ours)
    if multiprocess_dir is not None:
        from prometheus_client import multiprocess

        theirs = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(theirs, path=multiprocess_dir)
        return page + generate_latest(theirs)
    return page + generate_latest(REGISTRY)


def setup_multiprocess() -> tuple[str, bool]:
    """Make a directory for prometheus_client's multiprocess files and point
    ``PROMETHEUS_MULTIPROC_DIR`` at it, for the workers this master forks.

    Returns the directory and whether it is greensrv's own (removed by :func:`cleanup`); one
    the operator set is used as it is. True multiprocess mode needs the variable set before
    the application imports prometheus_client; if it was imported earlier, metrics it makes
    from now on (in the workers, and after each reload's fresh import) still use the files.
    """
    global _own_dir
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        return given, given == _own_dir
    path = _own_dir = tempfile.mkdtemp(prefix="greensrv-metrics-")
    os.environ[MULTIPROC_ENV] = path
    _switch_value_class()
    return path, True


def _switch_value_class() -> None:
    import sys

    values = sys.modules.get("prometheus_client.values")
    if values is not None:  # imported before the variable was set: its choice was made
        values.ValueClass = values.get_value_class()  # type: ignore[attr-defined]


def registered_collectors() -> set[Any]:
    """The collectors in prometheus_client's default registry now (none if not imported)."""
    import sys

    module = sys.modules.get("prometheus_client.registry")
    if module is None:
        return set()
    return set(module.REGISTRY._collector_to_names)


def unregister_collectors(collectors: set[Any]) -> None:
    """Take ``collectors`` out of the default registry: an application imported afresh by a
    reload registers its metrics again under the same names."""
    if not collectors:
        return
    from prometheus_client import REGISTRY

    for collector in collectors:
        try:
            REGISTRY.unregister(collector)
        except KeyError:
            pass


def register_collectors(collectors: set[Any]) -> None:
    """Put ``collectors`` back (a reload that failed keeps the code, and metrics, it had)."""
    if not collectors:
        return
    from prometheus_client import REGISTRY

    for collector in collectors:
        REGISTRY.register(collector)


def worker_ended(path: str, pid: int) -> None:
    """prometheus_client's clean-up for a dead worker (its live gauges go; counters stay)."""
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, path)
    except Exception:
        pass


def cleanup(path: str, owned: bool) -> None:
    if owned:
        shutil.rmtree(path, ignore_errors=True)
        if os.environ.get(MULTIPROC_ENV) == path:
            del os.environ[MULTIPROC_ENV]
