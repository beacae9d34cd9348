"""greensrv's exceptions: one root, with builtin co-bases where callers expect them."""

__all__ = ["ConnectionShedError", "FilterError", "GreensrvError", "ProxyProtocolError",
           "RecordTimeoutError", "SlowClientError", "StartupError", "TLSError", "WorkerBootError"]


class GreensrvError(Exception):
    """Raised for any failure greensrv itself detects; the root of the hierarchy."""


class FilterError(GreensrvError, ValueError):
    """Raised when input bytes cannot be framed: malformed, oversized or truncated records."""


class ProxyProtocolError(FilterError):
    """Raised when the bytes at the start of a connection are not a valid PROXY header."""


class SlowClientError(GreensrvError):
    """Raised when a client's queued output passes ``output_limit`` and it is shut down."""


class TLSError(GreensrvError):
    """Raised when a TLS handshake fails, times out or meets a peer that does not speak TLS."""


class RecordTimeoutError(GreensrvError, TimeoutError):
    """Raised when a client takes longer than ``record_timeout`` to finish sending a record."""


class ConnectionShedError(GreensrvError):
    """Raised when a connection making the least progress is closed to make room at capacity."""

    def __init__(self, message: str, reason: str, stalled_for: float) -> None:
        super().__init__(message)
        self.reason = reason  #: "idle" or "slow record" (greensrv.overload)
        self.stalled_for = stalled_for  #: seconds since it last made progress


class StartupError(GreensrvError, OSError):
    """Raised by ``start()`` when a listening address cannot be opened; the message names it.

    An ``OSError`` with the original ``errno`` (``EADDRINUSE``...), so code that catches
    ``OSError`` keeps working; ``address`` is the ``listen`` entry that failed.
    """

    address: object = None
    #: Set when raised through ``serve_forever()``: printed as one line if nobody catches it.
    brief: bool = False


class WorkerBootError(GreensrvError):
    """Raised by a master when a worker failed while booting, before it ever served."""
