"""Operator-facing numbers: the statistics snapshot and the running counters behind it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Counters", "Statistics"]


@dataclass(frozen=True)
class Statistics:
    """What ``Server.statistics()`` returns: a frozen snapshot, safe to keep and compare."""

    accepting: bool  #: listening and below the concurrency limit
    live_connections: int  #: counted toward concurrency (accept → greenlet end)
    pool_free: int | None  #: slots left under concurrency; None when unlimited
    accepted: int  #: sockets accepted, including those refused right after
    refused: int  #: dropped by client_pre_connect or max_connections_per_ip
    refused_per_ip: int  #: of those, by max_connections_per_ip
    bytes_in: int
    bytes_out: int
    client_errors: int  #: reports to client_error
    tls_failures: int  #: failed or timed-out TLS handshakes
    closed_idle: int  #: connections ended by idle_timeout
    closed_record_timeout: int  #: ended by record_timeout (slow senders)
    closed_output_limit: int  #: ended by output_limit (SlowClientError)
    closed_shed: int  #: closed at capacity to make room for waiting clients (shedding)
    closed_filter_error: int  #: ended by malformed or oversized input
    accept_capacity_errors: int  #: accept() failures for want of descriptors or memory
    listener_errors: int  #: fatal listener errors reported to ``error``
    proxy_rejected: int  #: closed for a missing, bad or untrusted PROXY header
    proxy_untrusted: int  #: of those, from a peer outside proxy_trusted
    proxy_timeouts: int  #: of those, whose header took longer than proxy_timeout


class Counters:
    """A server's running counts, one named field each, starting at 0.

    Its parts count through :meth:`count` (``ConnectionHooks.count``) or by adding to a field;
    either way a misspelt name is an ``AttributeError``, never a count that silently stays 0.
    """

    __slots__ = ("accepted", "refused_pre_connect", "refused_per_ip", "client_errors",
                 "tls_failures", "closed_idle", "closed_record_timeout", "closed_output_limit",
                 "closed_shed", "closed_filter_error", "accept_capacity_errors",
                 "listener_errors", "proxy_rejected", "proxy_untrusted", "proxy_timeouts")

    accepted: int  #: sockets accepted, including those refused right after
    refused_pre_connect: int  #: dropped by client_pre_connect
    refused_per_ip: int  #: dropped by max_connections_per_ip
    client_errors: int
    tls_failures: int
    closed_idle: int
    closed_record_timeout: int
    closed_output_limit: int
    closed_shed: int
    closed_filter_error: int
    accept_capacity_errors: int
    listener_errors: int
    proxy_rejected: int
    proxy_untrusted: int
    proxy_timeouts: int

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def count(self, key: str) -> None:
        """Add one to the field named ``key``; ``AttributeError`` if there is none."""
        setattr(self, key, getattr(self, key) + 1)

    def snapshot(self, *, accepting: bool, live_connections: int, pool_free: int | None,
                 bytes_in: int, bytes_out: int) -> Statistics:
        """These counts and the figures given, as one frozen :class:`Statistics`."""
        counted = {name: getattr(self, name) for name in self.__slots__
                   if name != "refused_pre_connect"}
        return Statistics(accepting=accepting, live_connections=live_connections,
                          pool_free=pool_free, bytes_in=bytes_in, bytes_out=bytes_out,
                          refused=self.refused_pre_connect + self.refused_per_ip, **counted)
