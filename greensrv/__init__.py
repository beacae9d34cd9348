"""greensrv: TCP servers written as plain blocking-style Python on gevent.

One greenlet per client runs your handler (or POE-style callbacks); records come through sans-IO
filters. See README.md for the quick start and ``docs/`` for the guide.
"""

from . import filters
from .backoff import Backoff
from .client import Client
from .connection import Connection
from .dial import connect
from .errors import (
    ConnectionShedError,
    FilterError,
    GreensrvError,
    RecordTimeoutError,
    SlowClientError,
    StartupError,
    TLSError,
    WorkerBootError,
)
from .proxy import ProxyHeader, ProxyProtocolError
from .server import Server, serve_forever

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "Client",
    "Connection",
    "ConnectionShedError",
    "FilterError",
    "GreensrvError",
    "ProxyHeader",
    "ProxyProtocolError",
    "RecordTimeoutError",
    "Server",
    "SlowClientError",
    "StartupError",
    "TLSError",
    "WorkerBootError",
    "__version__",
    "connect",
    "filters",
    "serve_forever",
]
