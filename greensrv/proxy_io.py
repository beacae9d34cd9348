"""Reading a PROXY header off an accepted socket, and the server options that govern it.

The per-client life calls :func:`receive_proxy_header` first, before ``client_pre_connect`` and
TLS. It never consumes a byte past the header: it peeks (``MSG_PEEK``) at what has arrived,
lets the sans-IO :class:`~greensrv.proxy.ProxyHeaderParser` find where the header ends, and
then reads exactly that many bytes, so the TLS ClientHello or the first record the proxy sent in
the same segment stays in the kernel for whoever reads next. Bytes peeked while the header is
still incomplete are all header, so they are read at once: a client dripping one byte at a time
costs one wake-up per byte, never a busy loop. The usual case, the whole header already
waiting, takes a shorter road: one non-blocking peek, one parse, one read, no timeout changes.

Failure handling: an untrusted peer, a malformed header, a wrong version, a peer that closes
early or a header not complete within ``proxy_timeout`` ends the connection without a reply,
with one INFO log line naming the peer and a statistics counter; the handler never runs.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .addresses import format_address
from .defaults import DEFAULT_PROXY_TIMEOUT, DEFAULT_PROXY_TRUSTED
from .error_log import PROXY_REFUSAL, client_log
from .options import check_seconds
from .proxy import ProxyHeader, ProxyHeaderParser, ProxyProtocolError, parse_whole_header

__all__ = ["DEFAULT_PROXY_TIMEOUT", "DEFAULT_PROXY_TRUSTED", "ProxySettings",
           "client_address", "proxy_settings", "receive_proxy_header"]

log = logging.getLogger("greensrv")

#: Bytes peeked per read while looking for the header's end: any v1 line or any v2 header the
#: parser's default limit allows, in one system call (peeking past the header costs nothing:
#: only the header's bytes are then read).
PEEK_SIZE = 8192

#: Proxy addresses whose trust is remembered: a deployment has a handful of balancers, and
#: judging a peer then costs one dictionary look-up instead of parsing its address.
TRUST_CACHE_SIZE = 256

_VERSIONS = {"v1": frozenset({1}), "v2": frozenset({2}), "any": frozenset({1, 2})}

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProxySettings:
    """The validated ``proxy_protocol``, ``proxy_trusted`` and ``proxy_timeout`` options."""

    versions: frozenset[int]
    trusted: tuple[Network, ...]
    timeout: float
    #: Peer IP → trusted, for the first TRUST_CACHE_SIZE peers seen.
    verdicts: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def trusts(self, peer: Any) -> bool:
        """Whether ``peer`` (an accepted socket's address) may send a PROXY header.

        A unix-socket peer is a process on this machine allowed by the socket file's
        permissions, and is trusted; an IPv4-mapped IPv6 peer is judged by its IPv4 address.
        """
        if not isinstance(peer, tuple):
            return True
        verdict = self.verdicts.get(peer[0])
        if verdict is None:
            verdict = _trusted(peer[0], self.trusted)
            if len(self.verdicts) < TRUST_CACHE_SIZE:
                self.verdicts[peer[0]] = verdict
        return verdict


def _trusted(host: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in trusted)


def proxy_settings(proxy_protocol: Any, proxy_trusted: Any,
                   proxy_timeout: Any) -> ProxySettings | None:
    """Check the three options (naming the one at fault); ``None`` when the protocol is off."""
    if proxy_protocol is not None and proxy_protocol not in _VERSIONS:
        raise ValueError(f"proxy_protocol must be 'v1', 'v2', 'any' or None, "
                         f"not {proxy_protocol!r}")
    check_seconds("proxy_timeout", proxy_timeout, positive=True)
    trusted = _networks(proxy_trusted)
    if proxy_protocol is None:
        return None
    return ProxySettings(_VERSIONS[proxy_protocol], trusted, float(proxy_timeout))


def _networks(value: Any) -> tuple[Network, ...]:
    single = (str, ipaddress.IPv4Network, ipaddress.IPv6Network, ipaddress.IPv4Address,
              ipaddress.IPv6Address)
    entries: Iterable[Any] = [value] if isinstance(value, single) else value
    try:
        entries = list(entries)
    except TypeError:
        raise TypeError(f"proxy_trusted must be addresses or networks (strings such as "
                        f"'10.0.0.0/8' or '::1'), not {type(value).__name__}") from None
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except (TypeError, ValueError):
            raise ValueError(f"proxy_trusted: {entry!r} is not an IPv4 or IPv6 address or "
                             f"network") from None
    return tuple(networks)


def client_address(header: ProxyHeader, peer: Any) -> Any:
    """The address to treat as the client's: the header's source, or the socket's own peer
    for LOCAL (health checks) and for headers that carry no address."""
    if header.command == "PROXY" and header.source is not None:
        return header.source
    return peer


def receive_proxy_header(sock: Any, peer: Any, settings: ProxySettings, name: str,
                         count: Callable[[str], None]) -> ProxyHeader | None:
    """The connection's PROXY header, or ``None`` when it is refused (logged and counted).

    ``sock`` is the accepted socket, ``peer`` its address; ``count`` is the server's counter.
    The caller closes the socket after a refusal.
    """
    if not settings.trusts(peer):
        count("proxy_rejected")
        count("proxy_untrusted")
        client_log.event(PROXY_REFUSAL, _ip(peer), logging.INFO, "%s: refused %s: not in "
                         "proxy_trusted, and proxy_protocol needs a trusted proxy", name,
                         _describe(peer))
        return None
    try:
        header = read_proxy_header(sock, settings)
    except (ProxyProtocolError, OSError) as exc:
        count("proxy_rejected")
        if isinstance(exc, TimeoutError):
            count("proxy_timeouts")
            reason = f"no complete PROXY header within proxy_timeout={settings.timeout:g} s"
        elif isinstance(exc, ProxyProtocolError):
            reason = str(exc)
        else:
            reason = f"{exc.strerror or exc} before its PROXY header was complete"
        client_log.event(PROXY_REFUSAL, _ip(peer), logging.INFO, "%s: refused %s: %s", name,
                         _describe(peer), reason)
        return None
    if header.command == "LOCAL":
        log.debug("%s: PROXY LOCAL (a health check) from %s", name, _describe(peer))
    return header


def read_proxy_header(sock: Any, settings: ProxySettings) -> ProxyHeader:
    """Read exactly the header's bytes, within ``settings.timeout``.

    Raises ``ProxyProtocolError`` (malformed, or closed early), ``TimeoutError`` or ``OSError``.
    """
    header = _read_arrived_header(sock, settings)
    return header if header is not None else _read_header_slowly(sock, settings)


def _read_arrived_header(sock: Any, settings: ProxySettings) -> ProxyHeader | None:
    """The header when it has already arrived whole and is of the usual kinds, else ``None``.

    A proxy writes the header with its first segment, so it is normally waiting in the kernel
    when the client's greenlet starts: one non-blocking peek of gevent's underlying OS socket
    (always non-blocking) finds it without the timeout juggling a wait would need, one
    ``parse_whole_header`` parses it, and one read takes exactly its bytes. Anything else
    (nothing yet, a partial or unusual header, a plain blocking socket) is left, unread, to
    the general loop, which gives the same header or the same error.
    """
    raw = getattr(sock, "_sock", None)
    if not isinstance(raw, socket.SocketType) or raw.gettimeout() != 0.0:
        return None
    try:
        peeked = raw.recv(PEEK_SIZE, socket.MSG_PEEK)
    except OSError:  # nothing yet (EAGAIN), or an error the general loop will meet again
        return None
    found = parse_whole_header(peeked, settings.versions) if peeked else None
    if found is None:
        return None
    header, length = found
    _discard(sock, length)
    return header


def _read_header_slowly(sock: Any, settings: ProxySettings) -> ProxyHeader:
    """Peek, feed the incremental parser, wait with the deadline as the socket's timeout."""
    parser = ProxyHeaderParser(settings.versions)
    deadline = time.monotonic() + settings.timeout
    consumed = 0
    previous = sock.gettimeout()
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("proxy_timeout")
            sock.settimeout(remaining)
            peeked = sock.recv(max(parser.wanted(), PEEK_SIZE), socket.MSG_PEEK)
            if not peeked:
                parser.feed_eof()
            header = parser.feed(peeked)
            end = parser.header_length if header is not None else consumed + len(peeked)
            assert end is not None
            _discard(sock, end - consumed)
            consumed = end
            if header is not None:
                return header
    finally:
        sock.settimeout(previous)


def _discard(sock: Any, n: int) -> None:
    """Read and drop ``n`` bytes already peeked (so they are in the kernel's buffer)."""
    while n > 0:
        got = len(sock.recv(n))
        if not got:
            raise ProxyProtocolError("connection closed in the middle of its PROXY header")
        n -= got


def _ip(peer: Any) -> Any:
    """The peer's address without its port, as the log limiter counts distinct peers."""
    return peer[0] if isinstance(peer, tuple) else peer


def _describe(peer: Any) -> str:
    return format_address(peer) if peer else "a unix-socket peer"
