"""greensrv: TCP servers written as plain blocking-style Python on gevent.

One greenlet per client runs your handler (or POE-style callbacks); records come through sans-IO
filters. See README.md for the quick start and ``docs/`` for the guide.
"""

from . import _accelerate, filters
from .connection import Connection
from .errors import FilterError, GreensrvError, SlowClientError, TLSError
from .server import Server, serve_forever

__version__ = "0.1.0"

#: The modules running compiled (``greensrv.filters.line`` ...); empty when pure Python runs
#: (no compiler at install, ``GREENSRV_PURE_PYTHON=1``, or a stale build). See docs/compiled.md.
compiled: tuple[str, ...] = tuple(_accelerate.compiled)

__all__ = [
    "Connection",
    "FilterError",
    "GreensrvError",
    "Server",
    "SlowClientError",
    "TLSError",
    "__version__",
    "compiled",
    "filters",
    "serve_forever",
]
