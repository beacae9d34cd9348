"""The PROXY protocol, versions 1 (text) and 2 (binary): a sans-IO parser and an encoder.

A load balancer (HAProxy, nginx ``stream``, Envoy, a cloud NLB) opens its own connection to the
server and writes one header first, saying whom it is forwarding. :class:`ProxyHeaderParser`
takes bytes as they arrive and yields one :class:`ProxyHeader` or raises
:class:`ProxyProtocolError` as soon as the bytes cannot be a valid header; the bytes after the
header are left in :meth:`ProxyHeaderParser.pending` for TLS or the filter. It never touches a
socket: ``greensrv.proxy_io`` does the reading. The format is HAProxy's
``doc/proxy-protocol.txt``; see ``docs/proxy.md``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import ProxyProtocolError
from .filters.base import NEED_DATA
from .proxy_address import (
    FAMILIES,
    IPV4_TEXT,
    TRANSPORTS,
    ipv6_text,
    pack_ipv6,
    parse_v1_ipv4,
    parse_v1_ipv6,
    parse_v1_port,
    unpack_addresses,
)
from .proxy_encode import V2_FIXED_LENGTH, V2_SIGNATURE, encode_v1, encode_v2
from .proxy_tlv import (
    PP2_CLIENT_CERT_CONN,
    PP2_CLIENT_CERT_SESS,
    PP2_CLIENT_SSL,
    PP2_SUBTYPE_SSL_CIPHER,
    PP2_SUBTYPE_SSL_CN,
    PP2_SUBTYPE_SSL_KEY_ALG,
    PP2_SUBTYPE_SSL_SIG_ALG,
    PP2_SUBTYPE_SSL_VERSION,
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_CRC32C,
    PP2_TYPE_NETNS,
    PP2_TYPE_NOOP,
    PP2_TYPE_SSL,
    PP2_TYPE_UNIQUE_ID,
    ProxySSL,
    crc32c,
    parse_ssl,
    parse_tlvs,
    show_bytes,
)

__all__ = [
    "DEFAULT_MAX_V2_LENGTH", "PP2_CLIENT_CERT_CONN", "PP2_CLIENT_CERT_SESS", "PP2_CLIENT_SSL",
    "PP2_SUBTYPE_SSL_CIPHER", "PP2_SUBTYPE_SSL_CN", "PP2_SUBTYPE_SSL_KEY_ALG",
    "PP2_SUBTYPE_SSL_SIG_ALG", "PP2_SUBTYPE_SSL_VERSION", "PP2_TYPE_ALPN", "PP2_TYPE_AUTHORITY",
    "PP2_TYPE_CRC32C", "PP2_TYPE_NETNS", "PP2_TYPE_NOOP", "PP2_TYPE_SSL", "PP2_TYPE_UNIQUE_ID",
    "V1_MAX_LENGTH", "V2_SIGNATURE", "ProxyHeader", "ProxyHeaderParser", "ProxyProtocolError",
    "ProxySSL", "crc32c", "ipv6_text", "parse_proxy_header", "parse_whole_header",
]


#: An address as the header gives it: ``(ip, port)`` for TCP over IPv4 or IPv6, a path for UNIX.
Address = tuple[str, int] | str

V1_PREFIX = b"PROXY "
#: The longest v1 line the specification allows, CRLF included ("PROXY UNKNOWN" with two
#: full IPv6 addresses and ports); anything longer without a CRLF is not a v1 header.
V1_MAX_LENGTH = 107
#: Most bytes of a v2 address block plus TLVs accepted (the length field allows 65535). Real
#: proxies send well under 1 KiB (HAProxy's largest: a UNIX address block, ALPN, a 255-byte
#: authority, a 128-byte unique id and the SSL TLV); 4 KiB leaves room for cloud balancers'
#: custom TLVs while one connection cannot make us buffer 64 KiB before anything is checked.
DEFAULT_MAX_V2_LENGTH = 4096

_ALL_VERSIONS = frozenset({1, 2})
_COMMANDS = {0: "LOCAL", 1: "PROXY"}
#: Bytes of the v2 address block per family: two addresses and, for IP, two ports.
_ADDRESS_LENGTH = {"UNSPEC": 0, "INET": 12, "INET6": 36, "UNIX": 216}
_OCTET = rb"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rb"(" + _OCTET + rb"(?:\." + _OCTET + rb"){3})"
_PORT = rb"(0|[1-9][0-9]{0,4})"
#: A well-formed v1 TCP4 line (without CRLF), in one match: the common case's fast path. Lines
#: it does not match go through the field-by-field checks that say what is wrong.
_V1_TCP4 = re.compile(rb"PROXY TCP4 " + _IPV4 + b" " + _IPV4 + b" " + _PORT + b" " + _PORT)
_IPV6_CANDIDATE = rb"([0-9a-fA-F:]{2,39})"
#: A v1 TCP6 line shaped right, in one match; its addresses then go to pack_ipv6, and a line
#: either refuses goes through the field-by-field checks (and ``ipaddress``).
_V1_TCP6 = re.compile(rb"PROXY TCP6 " + _IPV6_CANDIDATE + b" " + _IPV6_CANDIDATE + b" " + _PORT
                      + b" " + _PORT)


# -- the header --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProxyHeader:
    """One PROXY header: whom the proxy is forwarding (immutable; ``encode`` writes it).

    ``source`` and ``destination`` are ``(ip, port)`` (IPv6 too) or a UNIX path, and ``None``
    when the header carries none or the receiver must ignore it (LOCAL, v1 UNKNOWN, v2 UNSPEC).
    ``tlvs`` maps each v2 TLV type to its value (NOOP padding is dropped). ``family`` follows
    from the addresses ("UNSPEC" when there are none).
    """

    version: int
    command: str = "PROXY"
    source: Address | None = None
    destination: Address | None = None
    tlvs: Mapping[int, bytes] = field(default_factory=dict)
    family: str = ""  #: "INET", "INET6", "UNIX" or "UNSPEC"; inferred from ``source``
    transport: str = "STREAM"  #: "STREAM", "DGRAM" or "UNSPEC"

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"ProxyHeader version must be 1 or 2, not {self.version!r}")
        if self.command not in ("PROXY", "LOCAL"):
            raise ValueError(f"ProxyHeader command must be 'PROXY' or 'LOCAL', "
                             f"not {self.command!r}")
        if (self.source is None) != (self.destination is None):
            raise ValueError("ProxyHeader needs both source and destination, or neither")
        for name in ("source", "destination"):  # (host, port, flowinfo, scope) → (host, port)
            value = getattr(self, name)
            if isinstance(value, tuple) and len(value) != 2:
                if len(value) != 4:
                    raise ValueError(f"ProxyHeader {name} must be (ip, port) or a UNIX path, "
                                     f"not {value!r}")
                object.__setattr__(self, name, (value[0], value[1]))
        family = _infer_family(self.source)
        if self.family and self.family != family:
            raise ValueError(f"ProxyHeader family {self.family!r} does not match its addresses "
                             f"({family})")
        object.__setattr__(self, "family", family)
        if self.transport not in TRANSPORTS.values():
            raise ValueError(f"ProxyHeader transport must be one of "
                             f"{sorted(TRANSPORTS.values())}, not {self.transport!r}")
        if self.source is not None and self.transport == "UNSPEC":
            raise ValueError("ProxyHeader addresses need a transport, STREAM or DGRAM")
        object.__setattr__(self, "tlvs", MappingProxyType(dict(self.tlvs)))

    def __hash__(self) -> int:
        return hash((self.version, self.command, self.source, self.destination,
                     tuple(self.tlvs.items()), self.family, self.transport))

    @property
    def alpn(self) -> bytes | None:
        """The application protocol the client negotiated with the proxy, e.g. ``b"h2"``."""
        return self.tlvs.get(PP2_TYPE_ALPN)

    @property
    def authority(self) -> str | None:
        """The host name the client asked for (TLS SNI or HTTP Host)."""
        value = self.tlvs.get(PP2_TYPE_AUTHORITY)
        return None if value is None else value.decode("utf-8", "replace")

    @property
    def unique_id(self) -> bytes | None:
        """The proxy's identifier for this connection, for correlating logs across layers."""
        return self.tlvs.get(PP2_TYPE_UNIQUE_ID)

    @property
    def netns(self) -> str | None:
        """The network namespace the proxy accepted the connection in."""
        value = self.tlvs.get(PP2_TYPE_NETNS)
        return None if value is None else value.decode("ascii", "replace")

    @property
    def ssl(self) -> ProxySSL | None:
        """The PP2_TYPE_SSL TLV, or None when the proxy sent none."""
        value = self.tlvs.get(PP2_TYPE_SSL)
        return None if value is None else parse_ssl(value)

    def encode(self, version: int | None = None) -> bytes:
        """The header's wire form in ``version`` (default: its own).

        In v2, a PP2_TYPE_CRC32C entry in ``tlvs`` (any 4 bytes) is filled with the checksum.
        ``ValueError`` when the version cannot carry the header (v1 has no TLVs, no UNIX).
        """
        version = self.version if version is None else version
        if version == 1:
            return encode_v1(self)
        if version == 2:
            return encode_v2(self)
        raise ValueError(f"PROXY protocol version must be 1 or 2, not {version!r}")


_NO_TLVS: Mapping[int, bytes] = MappingProxyType({})


def _new_header(version: int, command: str, source: Address | None,
                destination: Address | None, tlvs: Mapping[int, bytes], family: str,
                transport: str) -> ProxyHeader:
    """A ProxyHeader from the parser, whose fields are valid by construction: skipping the
    dataclass's checks saves a third of a v1 header's parse."""
    header = object.__new__(ProxyHeader)
    header.__dict__.update(version=version, command=command, source=source,
                           destination=destination, tlvs=tlvs, family=family,
                           transport=transport)
    return header


def _infer_family(address: Address | None) -> str:
    if address is None:
        return "UNSPEC"
    if isinstance(address, str):
        return "UNIX"
    return "INET6" if ":" in address[0] else "INET"


# -- the parser --------------------------------------------------------------------------------
class ProxyHeaderParser:
    """Buffers the first bytes of a connection and yields its PROXY header.

    ``versions`` are the accepted ones (1, 2 or both); ``max_v2_length`` bounds a v2 header's
    address block and TLVs. :meth:`next_header` returns the header or ``NEED_DATA``, and raises
    :class:`ProxyProtocolError` as soon as the bytes cannot begin a valid header. The CRLF of a
    v1 line is searched for only in bytes not searched before.
    """

    __slots__ = ("_buf", "_end", "_header", "_scanned", "_version", "max_v2_length",
                 "versions")

    def __init__(self, versions: Iterable[int] = (1, 2), *,
                 max_v2_length: int = DEFAULT_MAX_V2_LENGTH) -> None:
        self.versions = versions if isinstance(versions, frozenset) else frozenset(versions)
        if not self.versions or not self.versions <= _ALL_VERSIONS:
            raise ValueError(f"versions must be 1, 2 or both, not {sorted(self.versions)}")
        if not 0 <= max_v2_length <= 0xFFFF:
            raise ValueError(f"max_v2_length must be within 0..65535, not {max_v2_length}")
        self.max_v2_length = max_v2_length
        self._buf = bytearray()
        self._version = 0  # 0 until the first bytes say which version this is
        self._scanned = 0  # v1: bytes already searched for the line end
        self._end = -1  # where the header ends, once known
        self._header: ProxyHeader | None = None

    def receive(self, data: bytes) -> None:
        """Buffer more bytes from the connection."""
        self._buf += data

    def feed(self, data: bytes) -> ProxyHeader | None:
        """``receive(data)`` then the header, or ``None`` while it is incomplete."""
        fresh = not self._buf
        self._buf += data
        if fresh and isinstance(data, (bytes, bytearray)):
            found = parse_whole_header(data, self.versions, self.max_v2_length)
            if found is not None:  # the usual case: the whole header in the first bytes
                self._header, self._end = found
                self._version = found[0].version
                return self._header
        header = self.next_header()
        return None if header is NEED_DATA else header

    def feed_eof(self) -> None:
        """The connection closed: an error unless the whole header had arrived."""
        if self._header is None:
            raise ProxyProtocolError(f"connection closed after {len(self._buf)} bytes, before "
                                     f"the PROXY header was complete")

    def pending(self) -> bytes:
        """The bytes received after the header (all of them while there is no header yet)."""
        return bytes(self._buf[self._end:]) if self._header is not None else bytes(self._buf)

    @property
    def header_length(self) -> int | None:
        """Bytes the header took on the wire, once parsed."""
        return self._end if self._header is not None else None

    def wanted(self) -> int:
        """Most bytes the rest of the header can still take, so a reader need look no further."""
        have = len(self._buf)
        if self._header is not None:
            return 0
        if self._end >= 0:  # v2, length known
            return self._end - have
        if self._version == 2 or self.versions == {2}:
            return max(V2_FIXED_LENGTH - have, 1)
        return max(V1_MAX_LENGTH - have, 1)

    def next_header(self) -> Any:
        """The header, or ``NEED_DATA``; raises ``ProxyProtocolError`` for a malformed one."""
        if self._header is not None:
            return self._header
        if not self._version and not self._identify():
            return NEED_DATA
        header = self._next_v1() if self._version == 1 else self._next_v2()
        if header is not NEED_DATA:
            self._header = header
        return header

    def _identify(self) -> bool:
        buf = self._buf
        for version, prefix in ((1, V1_PREFIX), (2, V2_SIGNATURE)):
            n = min(len(buf), len(prefix))
            if n and buf[:n] == prefix[:n]:
                if n < len(prefix):
                    return False
                if version not in self.versions:
                    raise ProxyProtocolError(f"a PROXY v{version} header, but only "
                                             f"v{min(self.versions)} is accepted")
                self._version = version
                return True
        if buf:
            raise ProxyProtocolError(f"not a PROXY protocol header: it starts with "
                                     f"{show_bytes(bytes(buf[:16]))}")
        return False

    # -- version 1 ---------------------------------------------------------------------------
    def _next_v1(self) -> Any:
        buf = self._buf
        limit = min(len(buf), V1_MAX_LENGTH)
        start = self._scanned
        lf = buf.find(b"\n", start, limit)
        end = lf if lf >= 0 else limit
        cr = buf.find(b"\r", start, end)
        if lf >= 0:
            if cr >= 0 and cr != lf - 1:
                raise ProxyProtocolError("PROXY v1 line has a CR that is not followed by LF")
            if cr < 0 or lf == 0:
                raise ProxyProtocolError("PROXY v1 line ends with a lone LF instead of CRLF")
            self._end = lf + 1
            return _parse_v1(bytes(buf[:lf - 1]))
        if 0 <= cr < limit - 1:
            raise ProxyProtocolError("PROXY v1 line has a CR that is not followed by LF")
        if len(buf) >= V1_MAX_LENGTH:
            raise ProxyProtocolError(f"PROXY v1 line has no CRLF within its limit of "
                                     f"{V1_MAX_LENGTH} bytes")
        # A CR as the last byte may still be followed by its LF: search it again next time.
        self._scanned = limit - 1 if cr >= 0 else limit
        return NEED_DATA

    # -- version 2 ---------------------------------------------------------------------------
    def _next_v2(self) -> Any:
        buf = self._buf
        if self._end < 0:
            if len(buf) < V2_FIXED_LENGTH:
                return NEED_DATA
            self._check_v2_fixed()
        if len(buf) < self._end:
            return NEED_DATA
        return _parse_v2(bytes(buf[:self._end]))

    def _check_v2_fixed(self) -> None:
        """Reject a bad version, command, family or length before waiting for the rest."""
        ver_cmd, fam_proto, length = struct.unpack_from("!BBH", self._buf, 12)
        if ver_cmd >> 4 != 2:
            raise ProxyProtocolError(f"PROXY v2 signature with version {ver_cmd >> 4}; only "
                                     f"version 2 exists")
        if ver_cmd & 0xF not in _COMMANDS:
            raise ProxyProtocolError(f"PROXY v2 command {ver_cmd & 0xF} is neither LOCAL (0) "
                                     f"nor PROXY (1)")
        if fam_proto >> 4 not in FAMILIES:
            raise ProxyProtocolError(f"PROXY v2 address family {fam_proto >> 4} is not one of "
                                     f"UNSPEC, INET, INET6, UNIX (0-3)")
        if fam_proto & 0xF not in TRANSPORTS:
            raise ProxyProtocolError(f"PROXY v2 transport {fam_proto & 0xF} is not one of "
                                     f"UNSPEC, STREAM, DGRAM (0-2)")
        if length > self.max_v2_length:
            raise ProxyProtocolError(f"PROXY v2 header of {length} bytes after its first 16 "
                                     f"exceeds max_v2_length={self.max_v2_length}")
        needed = _ADDRESS_LENGTH[FAMILIES[fam_proto >> 4]]
        if length < needed:
            raise ProxyProtocolError(f"PROXY v2 {FAMILIES[fam_proto >> 4]} address block "
                                     f"needs {needed} bytes but the length field says {length}")
        self._end = V2_FIXED_LENGTH + length


def parse_proxy_header(data: bytes, versions: Iterable[int] = (1, 2), *,
                       max_v2_length: int = DEFAULT_MAX_V2_LENGTH) -> tuple[ProxyHeader, bytes]:
    """The header at the start of ``data`` and the bytes after it; an error if incomplete."""
    parser = ProxyHeaderParser(versions, max_v2_length=max_v2_length)
    header = parser.feed(data)
    if header is None:
        parser.feed_eof()
    assert header is not None
    return header, parser.pending()


#: The fixed part of a v2 header and an INET address block, in one unpack: signature,
#: version/command, family/transport, length, the eight address octets and the two ports.
_V2_INET = struct.Struct("!12sBBH8B2H")
#: The fixed part of a v2 header and an INET6 block's ports (the addresses go to ipv6_text).
_V2_INET6 = struct.Struct("!12sBBH32x2H")
_VER2_PROXY = 0x21
_INET_STREAM, _INET6_STREAM = 0x11, 0x21


def parse_whole_header(data: bytes | bytearray, versions: frozenset[int],
                       max_v2_length: int = DEFAULT_MAX_V2_LENGTH
                       ) -> tuple[ProxyHeader, int] | None:
    """The header and its length when ``data`` starts with a whole one of the usual kinds.

    The fast path for the common case, the header and the first payload arriving together:
    v2 PROXY over TCP on IPv4 or IPv6 (with any TLVs, CRC32C verified) in one ``unpack``,
    and v1 with its line end in one search. ``None`` for anything else (incomplete, LOCAL,
    UNIX, DGRAM, a bad fixed part...): the incremental :class:`ProxyHeaderParser` then gives
    the header or says what is wrong. An error raised here is the one it would raise, from
    the same checks, since those are shared.
    """
    if data[:12] == V2_SIGNATURE:
        if 2 not in versions or len(data) < 28:
            return None
        _, ver_cmd, fam_proto, length = _V2_INET.unpack_from(data)[:4]
        end = V2_FIXED_LENGTH + length
        if ver_cmd != _VER2_PROXY or length > max_v2_length or len(data) < end:
            return None
        if fam_proto == _INET_STREAM and length >= 12:
            _, _, _, _, a, b, c, d, e, f, g, h, sport, dport = _V2_INET.unpack_from(data)
            source: Address = (IPV4_TEXT % (a, b, c, d), sport)
            destination: Address = (IPV4_TEXT % (e, f, g, h), dport)
            family, address_length = "INET", 12
        elif fam_proto == _INET6_STREAM and length >= 36 and len(data) >= 52:
            sport, dport = _V2_INET6.unpack_from(data)[4:]
            source = (ipv6_text(data[16:32]), sport)
            destination = (ipv6_text(data[32:48]), dport)
            family, address_length = "INET6", 36
        else:
            return None
        tlvs = _NO_TLVS
        if length > address_length:
            header = bytes(data[:end])
            tlvs = _v2_tlvs(header, header[V2_FIXED_LENGTH:], address_length)
        return _new_header(2, "PROXY", source, destination, tlvs, family, "STREAM"), end
    if data[:6] == V1_PREFIX:
        lf = data.find(b"\n", 0, V1_MAX_LENGTH)
        if (1 not in versions or lf < 7 or data[lf - 1] != 0x0D
                or data.find(b"\r", 0, lf - 1) >= 0):
            return None
        return _parse_v1(bytes(data[:lf - 1])), lf + 1
    return None


def _parse_v1(line: bytes) -> ProxyHeader:
    """One v1 line without its CRLF: ``PROXY TCP4|TCP6 src dst sport dport`` or UNKNOWN."""
    match = _V1_TCP4.fullmatch(line)
    if match is not None:
        src, dst, sport, dport = match.groups()
        if int(sport) <= 65535 and int(dport) <= 65535:
            return _new_header(1, "PROXY", (src.decode(), int(sport)),
                               (dst.decode(), int(dport)), _NO_TLVS, "INET", "STREAM")
    match = _V1_TCP6.fullmatch(line)
    if match is not None:
        src, dst, sport, dport = match.groups()
        src_packed, dst_packed = pack_ipv6(src), pack_ipv6(dst)
        if (src_packed is not None and dst_packed is not None and int(sport) <= 65535
                and int(dport) <= 65535):
            return _new_header(1, "PROXY", (ipv6_text(src_packed), int(sport)),
                               (ipv6_text(dst_packed), int(dport)), _NO_TLVS, "INET6", "STREAM")
    parts = line.split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        return ProxyHeader(1, "PROXY", None, None, family="UNSPEC", transport="UNSPEC")
    if len(parts) < 2 or parts[1] not in (b"TCP4", b"TCP6"):
        protocol = parts[1] if len(parts) > 1 else b""
        raise ProxyProtocolError(f"PROXY v1 protocol {show_bytes(protocol)} is not TCP4, TCP6 or "
                                 f"UNKNOWN")
    if len(parts) != 6:
        raise ProxyProtocolError(f"PROXY v1 {parts[1].decode()} line needs 4 fields after the "
                                 f"protocol, separated by single spaces; got {show_bytes(line)}")
    family = "INET" if parts[1] == b"TCP4" else "INET6"
    parse_ip = parse_v1_ipv4 if family == "INET" else parse_v1_ipv6
    source = (parse_ip(parts[2], "source"), parse_v1_port(parts[4], "source"))
    destination = (parse_ip(parts[3], "destination"), parse_v1_port(parts[5], "destination"))
    return ProxyHeader(1, "PROXY", source, destination, family=family)


def _parse_v2(header: bytes) -> ProxyHeader:
    """A whole v2 header whose first 16 bytes were already checked."""
    ver_cmd, fam_proto = header[12], header[13]
    command = _COMMANDS[ver_cmd & 0xF]
    family, transport = FAMILIES[fam_proto >> 4], TRANSPORTS[fam_proto & 0xF]
    body = header[V2_FIXED_LENGTH:]
    address_length = _ADDRESS_LENGTH[family]
    source = destination = None
    if command == "PROXY" and transport != "UNSPEC" and family != "UNSPEC":
        source, destination = unpack_addresses(family, body[:address_length])
    else:  # the specification: ignore the address block (LOCAL, or nothing to say)
        family = "UNSPEC"
    return _new_header(2, command, source, destination,
                       _v2_tlvs(header, body, address_length), family, transport)


def _v2_tlvs(header: bytes, body: bytes, address_length: int) -> Mapping[int, bytes]:
    """The TLVs after the address block, checked, and the CRC32C verified if there is one."""
    if len(body) == address_length:
        return _NO_TLVS
    tlvs, crc_at = parse_tlvs(body, address_length, "TLV")
    if crc_at >= 0:
        offset = V2_FIXED_LENGTH + crc_at
        expected = int.from_bytes(header[offset:offset + 4], "big")
        actual = crc32c(header[:offset] + b"\0\0\0\0" + header[offset + 4:])
        if actual != expected:
            raise ProxyProtocolError(f"PROXY v2 CRC32C mismatch: header says 0x{expected:08x}, "
                                     f"its bytes give 0x{actual:08x}")
    return MappingProxyType(tlvs) if tlvs else _NO_TLVS
