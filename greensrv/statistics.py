"""Operator-facing numbers: the statistics snapshot (``Server.statistics()``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Statistics"]


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
