"""What the parts of a Connection share: the fields every part may use, and the wait results.

``Connection`` is one chain of classes: the sans-IO ``OutputQueue``, these fields, ``InputSide``
(connection_input.py), ``OutputSide`` (connection_output.py), then ``Connection``; one chain, not
mixins, so that the compiled build can make each a C type (docs/compiled.md). The state lives
in these ``__slots__`` (connection.py keeps the socket and the watchers; connection_input.py
the waiting).
``ConnectionFields`` declares, for type checkers only, the fields and methods of ``Connection``
that the parts use, so each part reads as what it is: private steps of one object.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from ._accelerate import accelerate
from .connection_state import ConnectionState  # the compiled fields cimport it: import it first
from .output_queue import OutputQueue

if TYPE_CHECKING:
    from gevent.event import Event

    from .filters.base import Filter
    from .limits import Limits

__all__ = ["READY", "RECV_SIZE", "TIMEOUT", "WAKE", "ConnectionFields"]

#: What a wait ends with: the watcher fired, the timer did, or _wake() was called.
READY, TIMEOUT, WAKE = "ready", "timeout", "wake"

#: Bytes asked of the kernel per read: one read takes a typical burst of pipelined records,
#: and it is the most a client can make us buffer beyond one record.
RECV_SIZE = 65536


class ConnectionFields(OutputQueue):
    """Every field of a Connection (its parts share one object), and the methods of Connection
    that the parts call (declared for type checkers, defined in connection.py)."""

    __slots__ = (
        "__weakref__", "_accepted_at", "_bytes_in", "_bytes_out", "_read_wait_since", "_state",
        "_discarded", "_eof_records", "_first_read",
        "error", "_events", "_event_glet", "_flush_cb", "_flush_event", "_hooks",
        "_hub", "_idle_spent", "_in", "_limits", "_linger",
        "_loop", "_partial_since", "_last_recv", "_rw", "_transport", "_waiting", "_writing", "_ww",
        "_data", "id", "proxy", "remote_address", "remote_ip",
        "remote_port", "server", "socket",
    )

    if TYPE_CHECKING:  # the types of the fields, and Connection's methods the parts call
        socket: Any
        remote_address: Any
        error: BaseException | None
        _hooks: Any  # a ConnectionHooks
        _limits: Limits
        _linger: Any
        _state: ConnectionState
        _in: Filter
        _transport: Any
        _hub: Any
        _loop: Any
        _rw: Any
        _ww: Any
        _waiting: Any
        _writing: bool
        _flush_cb: Any
        _flush_event: Event | None
        _events: deque[str] | None
        _event_glet: Any
        _eof_records: deque[Any] | None
        _first_read: bool
        _discarded: int
        _idle_spent: float
        _partial_since: float | None
        _last_recv: float
        _accepted_at: float
        _read_wait_since: float | None
        _bytes_in: int
        _bytes_out: int

        def _wake(self) -> None: ...
        def _write_watcher(self) -> Any: ...
        def _stop_input(self) -> None: ...
        def close(self) -> None: ...
        def flush(self, timeout: float | None = None) -> None: ...
        def _flush(self) -> None: ...
        def _start_linger(self, seconds: float) -> None: ...


accelerate(globals(), "greensrv._c_connection_fields",
           requires=("greensrv.filters.base", "greensrv.output_queue",
                     "greensrv.connection_state"))
