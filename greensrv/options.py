"""The checks that name a misused option (the defaults and their reasons are in defaults.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .filters import Filter


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
