"""What a connection reports to whoever made it, and nothing else (pure: no I/O).

A :class:`~greensrv.Connection` never calls its maker (the server's per-client life, or
``greensrv.connect``) in any other way: its maker hands it one of these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["NO_HOOKS", "ConnectionHooks", "ServerHooks"]


class ConnectionHooks:
    """What a Connection reports to whoever made it, and which side that maker is on. The
    defaults do nothing (a server-side connection with no owner).

    The server supplies one that counts statistics, reports to ``client_error`` and runs
    ``client_flushed``/``client_high``/``client_low``; a client supplies its own. A Connection
    never calls its owner in any other way.
    """

    #: Callbacks run in the connection's own greenlet on output events, by key: "flushed" (all
    #: queued output written), "high" (queued output rose past high_mark), "low" (back below
    #: low_mark). A missing key costs nothing.
    output_callbacks: Mapping[str, Callable[[Connection], Any]] = MappingProxyType({})

    #: True when the connection's peer is a server (``greensrv.connect``, ``Client``):
    #: ``start_tls`` then handshakes as a TLS client, and messages call the peer "the server".
    client_side = False

    #: The host name a client-side ``start_tls`` checks by default: the name connected to.
    server_hostname: str | None = None

    def count(self, key: str) -> None:
        """A statistics counter went up by one, e.g. "closed_idle" or "tls_failures"."""

    def report_error(self, conn: Connection, exc: BaseException) -> None:
        """An output callback raised ``exc``; the server sends it to ``client_error``."""

    def closed(self, conn: Connection) -> None:
        """``conn``'s socket was closed; called exactly once, from ``close()``."""


#: Hooks that do nothing, for a Connection whose maker wants no reports.
NO_HOOKS = ConnectionHooks()


class ServerHooks(ConnectionHooks):
    """How a server's connections, listeners and shedder reach it: statistics, client_error,
    output callbacks (ConnectionHooks); accepted sockets, the concurrency limit, listener errors
    (``listeners.ListenerOwner``); the live connections and listening sockets
    (``shedding.ShedderOwner``). Each hook is a bound method of the server, of its counters or
    of its per-client life, set per instance, so a hook costs no forwarding frame (accepting and
    closing pay them once per client). The server sets ``closed`` and ``accept_client`` once
    its per-client life exists; the admission sets each listener's ``full``.
    """

    accept_client: Callable[[Any, Any], None]  # ListenerOwner: ClientLife.accept

    def __init__(self, name: str, output_callbacks: Mapping[str, Callable[[Connection], Any]],
                 count: Callable[[str], None],
                 report_error: Callable[[Connection, BaseException], None],
                 listener_failed: Callable[[Any, OSError], None],
                 connections: dict[int, Connection],
                 listening_sockets: Callable[[], list[Any]]) -> None:
        self.name = name
        self.output_callbacks = output_callbacks
        self.count = count  # type: ignore[method-assign, assignment]
        self.report_error = report_error  # type: ignore[method-assign, assignment]
        self.listener_failed = listener_failed
        self.connections = connections
        self.listening_sockets = listening_sockets

    def full(self) -> bool:
        """ListenerOwner: replaced per listener by the admission's check (set_full_check)."""
        return False
