"""greensrv's exceptions: one root, with builtin co-bases where callers expect them."""

__all__ = ["FilterError", "GreensrvError", "RecordTimeoutError", "SlowClientError", "TLSError",
           "WorkerBootError"]


class GreensrvError(Exception):
    """Raised for any failure greensrv itself detects; the root of the hierarchy."""


class FilterError(GreensrvError, ValueError):
    """Raised when input bytes cannot be framed: malformed, oversized or truncated records."""


class SlowClientError(GreensrvError):
    """Raised when a client's queued output passes ``output_limit`` and it is shut down."""


class TLSError(GreensrvError):
    """Raised when a TLS handshake fails, times out or meets a peer that does not speak TLS."""


class RecordTimeoutError(GreensrvError, TimeoutError):
    """Raised when a client takes longer than ``record_timeout`` to finish sending a record."""


class WorkerBootError(GreensrvError):
    """Raised by a master when a worker failed while booting, before it ever served."""
