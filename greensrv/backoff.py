"""Backoff: how long a reconnecting ``Client`` waits between attempts.

POE::Component::Client::TCP has no policy (the user posts ``delay(reconnect => 60)`` by hand);
Twisted's ``ClientService`` has one, and so do we: delays grow by ``factor`` from ``initial`` up
to ``maximum``, each spread by ``jitter``, and start over after a connection that lasted.
Pure: no sockets, no gevent; the Client does the waiting.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from .options import check_seconds

__all__ = ["Backoff"]

#: First delay: one second is long enough not to hammer a server that refuses at once, short
#: enough that a restart (typically a second or two) is hardly noticed.
DEFAULT_INITIAL = 1.0
#: Longest delay: a minute, as POE's documentation suggests and Twisted's ClientService uses,
#: so a client notices a server back within a minute of its return.
DEFAULT_MAXIMUM = 60.0
#: Growth per failed attempt: 1.5 (Twisted's) reaches the maximum after about ten failures,
#: gentler than doubling for a server that is only briefly away.
DEFAULT_FACTOR = 1.5
#: Each delay is multiplied by a random factor in [1 - jitter, 1 + jitter]: ±10 % spreads the
#: many clients that lost the same server at the same moment without making any one wait much
#: longer.
DEFAULT_JITTER = 0.1
#: Seconds a connection must have lasted for the delays to start over from ``initial``: a server
#: that accepts and drops at once (overloaded, or the wrong service) must not be reconnected to
#: in a tight loop, while a real session of ten seconds or more clearly worked.
DEFAULT_RESET_AFTER = 10.0


class Backoff:
    """Reconnection delays: ``initial * factor**n`` capped at ``maximum``, with jitter.

    ``Backoff(jitter=0)`` turns jitter off: the delays are then exactly ``initial``,
    ``initial * factor``, ... up to ``maximum``. Immutable, so one policy can serve many
    clients; each client walks its own :meth:`delays`.
    """

    __slots__ = ("factor", "initial", "jitter", "maximum", "reset_after")

    def __init__(self, initial: float = DEFAULT_INITIAL, maximum: float = DEFAULT_MAXIMUM,
                 factor: float = DEFAULT_FACTOR, jitter: float = DEFAULT_JITTER,
                 reset_after: float = DEFAULT_RESET_AFTER) -> None:
        check_seconds("Backoff: initial", initial)
        check_seconds("Backoff: maximum", maximum)
        check_seconds("Backoff: reset_after", reset_after)
        if maximum < initial:
            raise ValueError(f"Backoff: maximum ({maximum}) must be at least initial ({initial})")
        if isinstance(factor, bool) or not isinstance(factor, int | float) or factor < 1:
            raise ValueError(f"Backoff: factor must be a number of at least 1, not {factor!r}")
        if isinstance(jitter, bool) or not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise ValueError(f"Backoff: jitter must be a fraction in [0, 1), not {jitter!r}")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self.jitter = float(jitter)
        self.reset_after = float(reset_after)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before reconnection attempt ``attempt`` (0 for the first)."""
        base = self.initial
        for _ in range(attempt):
            base *= self.factor
            if base >= self.maximum:
                break
        base = min(base, self.maximum)
        if not self.jitter:
            return base
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return base * (1.0 + spread)

    def delays(self) -> Iterator[float]:
        """The delays of one run of failures, without end (also ``iter(backoff)``)."""
        attempt = 0
        while True:
            yield self.delay(attempt)
            attempt += 1

    __iter__ = delays

    def __call__(self, attempt: int) -> float:
        """``delay(attempt)``: a Backoff is also a policy function, as Twisted's are."""
        return self.delay(attempt)

    def __repr__(self) -> str:
        return (f"Backoff(initial={self.initial:g}, maximum={self.maximum:g}, "
                f"factor={self.factor:g}, jitter={self.jitter:g}, "
                f"reset_after={self.reset_after:g})")
