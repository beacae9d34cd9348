"""How each connection ended: one word per connection, counted for the metrics and written to
the connection log (logger ``"greensrv.access"``) when it is on.

The client's life (``ClientLife``) calls :meth:`ConnectionEnds.ended` once per accepted socket,
and only when the server asked for metrics (``admin=``) or the log (``access_log=``): without
them that call is one ``None`` test per connection and nothing per record. The words, in
:data:`END_WORDS`, are the connection log's ``end`` field and the ``reason`` label of
``greensrv_connections_closed_total``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from bisect import bisect_left
from typing import Any

from ._accelerate import accelerate
from .access_log import direct_handler
from .errors import ConnectionShedError, RecordTimeoutError, SlowClientError

__all__ = ["DURATION_BUCKETS", "END_WORDS", "ConnectionEnds", "error_word", "format_peer"]

#: Every way a connection ends: closed by the peer; done (the handler returned, or the server
#: closed it); error (handler, filter, socket or TLS error); timeout (idle_timeout or the record
#: clock); shed (closed at capacity); slow (output_limit); stopped (a stop or a reload); refused
#: (per-IP limit, untrusted or bad PROXY header, client_pre_connect).
END_WORDS = ("closed", "done", "error", "timeout", "shed", "slow", "stopped", "refused")

#: Upper bounds (seconds) of ``greensrv_connection_duration_seconds``' buckets: connections
#: live from milliseconds (a request) to hours (a chat), so the buckets span both.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
                    1800.0, 3600.0, 21600.0)

#: The connection log's formats (``access_log_format=``).
LOG_FORMATS = ("text", "json")

access_log = logging.getLogger("greensrv.access")

_monotonic = time.monotonic


def error_word(error: BaseException) -> str:
    """The end word of a connection that carried ``error`` (a deferred error) to its end."""
    if isinstance(error, SlowClientError):
        return "slow"
    if isinstance(error, ConnectionShedError):
        return "shed"
    if isinstance(error, RecordTimeoutError):
        return "timeout"
    return "error"


def format_peer(address: Any) -> str:
    """``1.2.3.4:5``, ``[::1]:5``, ``unix:/path`` or ``-`` (unknown): one token, no spaces."""
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    if isinstance(address, (str, bytes)) and address:
        path = address.decode("utf-8", "replace") if isinstance(address, bytes) else address
        return f"unix:{path}"
    return "-"


class ConnectionEnds:
    """Counts ended connections by end word and duration; writes the connection log if on.

    ``counts`` and ``buckets`` are plain lists indexed like :data:`END_WORDS` and
    :data:`DURATION_BUCKETS` (one more bucket for +Inf): a worker sends them to its master as
    they are, and the master adds them up.
    """

    def __init__(self, log_format: str | None) -> None:
        if log_format is not None and log_format not in LOG_FORMATS:
            raise ValueError(f"access_log_format must be one of {', '.join(LOG_FORMATS)}, "
                             f"not {log_format!r}")
        self.log_format = log_format
        self.counts = [0] * len(END_WORDS)
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0
        self._index = {word: i for i, word in enumerate(END_WORDS)}
        self.pid = os.getpid()  # made in the process that serves (a worker makes its own)

    def ended(self, word: str, client: Any, server: Any, conn_id: int | None, started: float,
              bytes_in: int, bytes_out: int) -> None:
        """One connection ended as ``word``; ``started`` is its ``time.monotonic()`` start."""
        duration = _monotonic() - started
        self.counts[self._index[word]] += 1
        self.buckets[bisect_left(DURATION_BUCKETS, duration)] += 1
        self.duration_sum += duration
        if self.log_format is not None:
            self._log(word, client, server, conn_id, duration, bytes_in, bytes_out)

    def _log(self, word: str, client: Any, server: Any, conn_id: int | None, duration: float,
             bytes_in: int, bytes_out: int) -> None:
        if self.log_format == "json":
            line = json.dumps({"client": format_peer(client), "server": format_peer(server),
                               "id": conn_id, "pid": self.pid, "duration": round(duration, 6),
                               "bytes_in": bytes_in, "bytes_out": bytes_out, "end": word})
        else:
            line = (f"client={format_peer(client)} server={format_peer(server)} "
                    f"id={'-' if conn_id is None else conn_id} pid={self.pid} "
                    f"duration={duration:.6f} bytes_in={bytes_in} bytes_out={bytes_out} "
                    f"end={word}")
        handler: Any = direct_handler(access_log)  # asked each time: logging may be changed
        if handler is not None:  # the command's own file or stdout, and only it: no record
            with handler.lock:
                try:
                    handler.stream.write(line + "\n")
                    handler.stream.flush()
                except Exception:
                    handler.handleError(None)
            return
        if access_log.isEnabledFor(logging.INFO):
            # makeRecord + handle: what logger.info does, without looking up the caller's
            # frame (one line per connection: that lookup would be most of its cost).
            access_log.handle(access_log.makeRecord(access_log.name, logging.INFO, "", 0, line,
                                                    (), None))

    def snapshot(self) -> dict[str, Any]:
        """The counts so far, as plain JSON-able values (for the master and /metrics)."""
        return {"ends": list(self.counts), "buckets": list(self.buckets),
                "duration_sum": self.duration_sum}


# Compiled plainly (no .pxd): each ended connection's count and log line without a frame.
accelerate(globals(), "greensrv._c_connection_ends")
