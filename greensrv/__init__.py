"""greensrv: TCP servers written as plain blocking-style Python on gevent.

One greenlet per client runs your handler (or POE-style callbacks); records come through sans-IO
filters. See README.md for the quick start and ``docs/`` for the guide.
"""

from . import _accelerate, filters
from ._version import __version__
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

#: The modules running compiled (``greensrv.filters.line`` ...); empty when pure Python runs
#: (no compiler at install, ``GREENSRV_PURE_PYTHON=1``, or a stale build). See docs/compiled.md.
compiled: tuple[str, ...] = tuple(_accelerate.compiled)

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
    "compiled",
    "connect",
    "filters",
    "serve_forever",
]
