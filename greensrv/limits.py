"""Limits: every bound a connection enforces, validated once and frozen.

Whoever makes a :class:`~greensrv.Connection` (the server for each accepted client, or
``greensrv.connect``) builds one ``Limits`` and hands it over; the connection reads its timeouts,
watermarks and drain bounds from it, never from its owner at the moment of use. Pure: no socket,
ssl or gevent import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .defaults import (
    DEFAULT_DRAIN_LIMIT,
    DEFAULT_DRAIN_TIMEOUT,
    DEFAULT_FLUSH_TIMEOUT,
    DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_HIGH_MARK,
    DEFAULT_LOW_MARK,
    DEFAULT_OUTPUT_LIMIT,
    DEFAULT_RECORD_GRACE,
    DEFAULT_RECORD_TIMEOUT,
)
from .options import check_int, check_seconds
from .overload import RecordClock

__all__ = ["Limits"]

_SECONDS_OR_NONE = ("idle_timeout", "record_timeout", "record_start_timeout")
_SECONDS = ("handshake_timeout", "flush_timeout", "drain_timeout", "record_grace")


@dataclass(frozen=True)
class Limits:
    """The bounds of one connection; each field is checked at construction, naming itself.

    ``record_min_rate`` is None here, so a client-side connection keeps only ``record_timeout``
    (its peer is a server it chose); the Server passes its own default, 500 bytes/s
    (``docs/overload.md``). ``record_clock`` is derived from the four record fields.
    """

    high_mark: int = DEFAULT_HIGH_MARK
    low_mark: int = DEFAULT_LOW_MARK
    output_limit: int = DEFAULT_OUTPUT_LIMIT
    idle_timeout: float | None = None
    record_timeout: float | None = DEFAULT_RECORD_TIMEOUT
    record_min_rate: float | None = None
    record_grace: float = DEFAULT_RECORD_GRACE
    record_start_timeout: float | None = None
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    flush_timeout: float = DEFAULT_FLUSH_TIMEOUT
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    drain_limit: int = DEFAULT_DRAIN_LIMIT
    #: The record timeouts as one pure clock (greensrv.overload), made from the fields above.
    record_clock: RecordClock = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("high_mark", self.high_mark, minimum=1)
        check_int("low_mark", self.low_mark, minimum=0)
        check_int("output_limit", self.output_limit, minimum=1)
        check_int("drain_limit", self.drain_limit, minimum=0)
        if self.low_mark >= self.high_mark:
            raise ValueError(f"low_mark ({self.low_mark}) must be below "
                             f"high_mark ({self.high_mark})")
        if self.output_limit < self.high_mark:
            raise ValueError(f"output_limit ({self.output_limit}) must be at least "
                             f"high_mark ({self.high_mark})")
        for name in _SECONDS:
            value = getattr(self, name)
            check_seconds(name, value)
            object.__setattr__(self, name, float(value))
        for name in _SECONDS_OR_NONE:
            value = getattr(self, name)
            if value is not None:
                check_seconds(name, value, positive=True)
                object.__setattr__(self, name, float(value))
        if self.record_min_rate is not None:
            check_seconds("record_min_rate", self.record_min_rate, positive=True,
                          unit="bytes/s")
            object.__setattr__(self, "record_min_rate", float(self.record_min_rate))
        object.__setattr__(self, "record_clock", RecordClock(
            self.record_timeout, self.record_min_rate, self.record_grace,
            self.record_start_timeout))
