"""Writing PROXY headers: v1's text line and v2's binary form, and v2's fixed part.

Sans-IO helpers of :mod:`greensrv.proxy`: ``ProxyHeader.encode(version)`` calls them (for
clients and tests); the parser reads the same signature and fixed length.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from .proxy_address import FAMILIES, TRANSPORTS, pack_addresses
from .proxy_tlv import PP2_TYPE_CRC32C, crc32c

if TYPE_CHECKING:
    from .proxy import ProxyHeader

__all__ = ["V2_FIXED_LENGTH", "V2_SIGNATURE", "encode_v1", "encode_v2"]

#: The 12 bytes every v2 header begins with.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: Signature, version/command, family/transport and the 16-bit length.
V2_FIXED_LENGTH = 16


def encode_v1(header: ProxyHeader) -> bytes:
    """``header`` as a v1 text line; ValueError for what v1 cannot carry."""
    if header.tlvs:
        raise ValueError("a PROXY v1 header cannot carry TLVs; encode it as version 2")
    if header.command == "LOCAL" or header.source is None or header.family == "UNSPEC":
        return b"PROXY UNKNOWN\r\n"
    if header.family == "UNIX" or header.transport != "STREAM":
        raise ValueError(f"a PROXY v1 header carries TCP only, not {header.family} "
                         f"{header.transport}; encode it as version 2")
    assert isinstance(header.source, tuple) and isinstance(header.destination, tuple)
    protocol = "TCP4" if header.family == "INET" else "TCP6"
    (src, sport), (dst, dport) = header.source, header.destination
    return f"PROXY {protocol} {src} {dst} {sport} {dport}\r\n".encode("ascii")


def encode_v2(header: ProxyHeader) -> bytes:
    """``header`` as v2 binary, with its TLVs (a CRC32C TLV gets its checksum computed)."""
    families = {v: k for k, v in FAMILIES.items()}
    transports = {v: k for k, v in TRANSPORTS.items()}
    family = header.family
    body = bytearray()
    if header.source is not None and family != "UNSPEC":
        body += pack_addresses(family, header.source, header.destination)
    crc_at = -1
    for kind, value in header.tlvs.items():
        if not 0 <= kind <= 0xFF:
            raise ValueError(f"TLV type {kind} is not a byte")
        if kind == PP2_TYPE_CRC32C:
            crc_at, value = len(body) + 3, b"\0\0\0\0"
        body += struct.pack("!BH", kind, len(value)) + bytes(value)
    if len(body) > 0xFFFF:
        raise ValueError(f"PROXY v2 header body of {len(body)} bytes exceeds 65535")
    command = 1 if header.command == "PROXY" else 0
    wire = bytearray(V2_SIGNATURE + struct.pack(
        "!BBH", 0x20 | command, families[family] << 4 | transports[header.transport],
        len(body)) + body)
    if crc_at >= 0:
        offset = V2_FIXED_LENGTH + crc_at
        wire[offset:offset + 4] = crc32c(wire).to_bytes(4, "big")
    return bytes(wire)
