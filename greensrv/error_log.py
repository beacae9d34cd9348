"""The default error log: client misbehaviour limited by kind, with a summary per minute.

An attack is thousands of misbehaving clients, each with its own address in its message; the
log limits the kind (TLS handshake failure, malformed record, PROXY refusal, shed, per-IP
refusal, ...), not the text, and says at the end of each minute how many there were and from
how many addresses (``docs/overload.md``). ``statistics()`` counts every event whatever the log
shows. One limiter, ``client_log``, serves the whole process.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gevent import get_hub

from .errors import (
    ConnectionShedError,
    FilterError,
    GreensrvError,
    ProxyProtocolError,
    RecordTimeoutError,
    SlowClientError,
    TLSError,
)

__all__ = ["MALFORMED", "PER_IP_REFUSAL", "PROXY_REFUSAL", "SHED", "TLS_FAILURE",
           "ErrorLogLimiter", "client_log", "error_kind", "log_client_error",
           "log_listener_error"]

#: The kinds of client misbehaviour the default error log limits (``ErrorLogLimiter``).
TLS_FAILURE = "TLS handshake failure"
MALFORMED = "malformed record"
PROXY_REFUSAL = "PROXY refusal"
SHED = "shed"
PER_IP_REFUSAL = "per-IP refusal"


def error_kind(exc: BaseException) -> str | None:
    """The kind of client misbehaviour ``exc`` reports, for :class:`ErrorLogLimiter`; None for
    an application's own exception (a bug, logged by its message so that distinct bugs never
    hide each other)."""
    for cls, kind in _KINDS:
        if isinstance(exc, cls):
            return kind
    return type(exc).__name__ if isinstance(exc, GreensrvError) else None


#: greensrv's errors by kind, most specific first (a ProxyProtocolError is a FilterError).
_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (TLSError, TLS_FAILURE), (ProxyProtocolError, PROXY_REFUSAL), (FilterError, MALFORMED),
    (ConnectionShedError, SHED), (RecordTimeoutError, "record timeout"),
    (SlowClientError, "slow reader"),
)


class _Tally:
    """One kind's period: when it began, how many came, from which addresses."""

    __slots__ = ("start", "count", "peers", "timer")

    def __init__(self, start: float) -> None:
        self.start = start
        self.count = 0
        self.peers: set[Any] = set()
        self.timer: Any = None


class ErrorLogLimiter:
    """Logs at most ``burst`` events of one kind per ``period`` in full, then one summary.

    The kind of a client's misbehaviour (``error_kind``: a TLS handshake failure, a malformed
    record, a PROXY refusal, a shed connection, a per-IP refusal...) is what is limited, not the
    message text, which names the peer and so differs for every client of an attack. Past the
    burst one line says the rest are counted; when the period ends, one line per kind gives the
    count and the number of distinct peer addresses. An application's own exception is its own
    kind, by message, so distinct bugs never hide each other. Statistics and metrics count every
    event; only the log is limited.
    """

    #: Events of one kind logged in full per period before the rest are only counted.
    burst = 3
    #: Seconds a kind's count runs before it is summarised and starts again.
    period = 60.0
    #: Kinds (and distinct application messages) remembered at once; the oldest periods are
    #: summarised and forgotten past this, bounding memory.
    max_keys = 1024
    #: Distinct peer addresses remembered per kind and period: a summary past it says "at least".
    max_peers = 65536

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._tallies: dict[str, _Tally] = {}

    def log(self, prefix: str, exc: BaseException, with_traceback: bool = True,
            peer: Any = None) -> None:
        """Log ``prefix % exc`` unless its kind is past its burst (an error with its traceback,
        else a warning)."""
        kind = error_kind(exc)
        if not self._admit(f"{type(exc).__qualname__}: {exc}" if kind is None else kind, peer):
            return
        if with_traceback:
            self.logger.error(prefix, exc, exc_info=(type(exc), exc, exc.__traceback__))
        else:
            self.logger.warning(prefix, exc)

    def event(self, kind: str, peer: Any, level: int, message: str, *args: Any) -> None:
        """Log one event that is no exception (a refused connection) under ``kind``'s limit."""
        if self._admit(kind, peer):
            self.logger.log(level, message, *args)

    def flush(self) -> None:
        """Summarise every kind counted past its burst now, and start every count afresh."""
        for key in list(self._tallies):
            self._end(key)

    def _admit(self, key: str, peer: Any) -> bool:
        """Count one event; True while its kind is within its burst."""
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) >= self.max_keys:
                self._end(next(iter(self._tallies)))
            tally = self._tallies[key] = _Tally(time.monotonic())
        elif time.monotonic() - tally.start >= self.period:  # its timer could not run
            self._end(key)
            return self._admit(key, peer)
        tally.count += 1
        if peer is not None and len(tally.peers) < self.max_peers:
            tally.peers.add(peer)
        if tally.count <= self.burst:
            return True
        if tally.count == self.burst + 1:
            self.logger.warning("%s: more than %d in %g s: the rest are counted, not logged, "
                                "and summed up when the %g s are over", key, self.burst,
                                self.period, self.period)
            tally.timer = _later(tally.start + self.period - time.monotonic(),
                                 self._end, key)
        return False

    def _end(self, key: str) -> None:
        """Close ``key``'s period: its summary line if any was not logged, then forget it."""
        tally = self._tallies.pop(key, None)
        if tally is None:
            return
        if tally.timer is not None:
            tally.timer.close()
        if tally.count > self.burst:
            peers = len(tally.peers)
            self.logger.warning(
                "%s: %d in the last %.0f s from %s%d distinct address(es); %d not logged "
                "(statistics() counts every one)", key, tally.count,
                time.monotonic() - tally.start, "at least " if peers >= self.max_peers else "",
                peers, tally.count - self.burst)


def _later(delay: float, callback: Any, *args: Any) -> Any:
    """A timer on this thread's gevent loop that does not keep the loop alive."""
    timer = get_hub().loop.timer(max(delay, 0.0), ref=False)
    timer.start(callback, *args)
    return timer


#: The default ``client_error``'s log and the refusals' (PROXY, per-IP), one per process: an
#: attack on several servers in one process still costs a few lines per kind and minute.
client_log = ErrorLogLimiter(logging.getLogger("greensrv"))


def log_client_error(conn: Any, exc: BaseException) -> None:
    """The default ``client_error``: a few of each kind a minute (:class:`ErrorLogLimiter`),
    the rest counted.

    A client's misbehaviour (greensrv's own errors: bad framing, TLS failure, timeouts, slow
    reader) is a one-line warning, since its traceback would only show greensrv's internals; any
    other exception is a bug in the application and is logged with its traceback.
    """
    name = conn.server.name if conn.server is not None else "greensrv"
    client_log.log(f"{name}: error on {conn!r}: %s", exc,
                   with_traceback=not isinstance(exc, GreensrvError), peer=conn.remote_ip)


def log_listener_error(server: Any, exc: BaseException) -> None:
    """The default ``error``: a listener's fatal error, logged with its traceback."""
    logging.getLogger("greensrv").error("%s: listener error: %s", server.name, exc,
                                        exc_info=(type(exc), exc, exc.__traceback__))
