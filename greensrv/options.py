"""Server option defaults (each with its reason) and the checks that name a misused option."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .filters import Filter

#: Output queued past this pauses reading (backpressure). 512 KiB keeps a fast bulk transfer
#: from stalling on every send yet bounds what one client costs: with low_mark below it, reading
#: resumes only after a real drain, not on every byte.
DEFAULT_HIGH_MARK = 512 * 1024
#: Reading resumes once queued output is back below this.
DEFAULT_LOW_MARK = 128 * 1024
#: A connection whose queued output passes this (e.g. broadcasts to a client that never reads)
#: is shut down with SlowClientError: 16 × high_mark leaves room for bursts, bounds memory.
DEFAULT_OUTPUT_LIMIT = 8 * 1024 * 1024
#: Seconds a client may take to finish a record once its first byte has arrived (the slowloris
#: defence, like nginx's client_header_timeout of 60 s): 30 s is ample for any human or machine
#: client on a slow link, and it bounds how long a dripping client holds a slot.
DEFAULT_RECORD_TIMEOUT = 30.0
#: Seconds a TLS handshake may take before the client is dropped; a silent client must not hold
#: a pool slot. Generous for slow links, short enough to shed idle scanners.
DEFAULT_HANDSHAKE_TIMEOUT = 10.0
#: Seconds a worker's hub may stay blocked (a handler that never yields) before the master kills
#: and replaces it: gunicorn's 30 s, long enough for a slow import or a big synchronous job.
DEFAULT_WORKER_TIMEOUT = 30.0


def filter_factory(value: Any, name: str) -> Callable[[], Filter]:
    if isinstance(value, Filter):
        return value.clone
    if callable(value):
        return value  # type: ignore[no-any-return, unused-ignore]
    raise TypeError(f"{name} must be a Filter instance or a callable returning one, "
                    f"not {type(value).__name__}")


def check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")


#: The options whose documented "no limit" is None (the NaN error says so).
_NONE_MEANS_NO_LIMIT = ("idle_timeout", "record_timeout", "record_min_rate",
                        "record_start_timeout")


def check_seconds(name: str, value: Any, positive: bool = False, unit: str = "seconds") -> None:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of {unit}, not {type(value).__name__}")
    if not math.isfinite(value):  # NaN compares false with everything: it would mean forever
        raise ValueError(f"{name} must be a finite number of {unit}, not {value}"
                         + ("; None means no limit" if name in _NONE_MEANS_NO_LIMIT else ""))
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, "
                         f"not {value}")
