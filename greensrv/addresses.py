"""Address strings, the same on both sides: ``"host:port"``, ``"[v6]:port"``, ``"unix:/path"``.

``listen=`` and ``--bind`` on a server, ``greensrv.connect`` and ``Client`` on a client take the
same forms; this module parses them and writes them back for messages. Pure: no socket import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["describe_address", "split_host_port"]


def split_host_port(spec: str, what: str) -> tuple[str, int] | None:
    """``"host:port"`` or ``"[v6]:port"`` as ``(host, port)``; None when ``spec`` has no port.

    ValueError, naming ``what`` (the option) and ``spec``, for an IPv6 address without its
    brackets or a port out of range.
    """
    host, sep, port = spec.rpartition(":")
    if not sep or not port.isdigit():
        return None
    if int(port) > 65535:
        raise ValueError(f"{what}: {spec!r}: port {port} is past 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{what}: {spec!r}: put an IPv6 address in brackets, '[{host}]:{port}'")
    return host, int(port)


def describe_address(address: Any) -> str:
    """``host:port``, ``[v6]:port`` or ``unix:/path``, for messages."""
    if isinstance(address, tuple):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address)
