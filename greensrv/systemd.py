"""systemd integration without a dependency: socket activation and ``sd_notify``.

Socket activation: systemd (or ``systemd-socket-activate``) passes listening sockets from fd 3
on and says so in ``LISTEN_PID``, ``LISTEN_FDS`` and ``LISTEN_FDNAMES``. The first look at them
takes the descriptors and removes the three variables from the environment, so a program this
process starts does not think the sockets are its own; later looks get the same answer.

Notifications are plain datagrams to the unix socket named by ``NOTIFY_SOCKET`` (a leading ``@``
is the abstract namespace). Without ``NOTIFY_SOCKET`` every notification is a no-op, so callers
never need to ask whether they run under systemd. A notification that cannot be sent is logged
once at DEBUG and otherwise ignored: losing a status line must never stop a server.
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = ["SD_LISTEN_FDS_START", "listen_sockets", "notify", "notify_socket", "passed_sockets",
           "reloading_lines", "watchdog_interval"]

log = logging.getLogger("greensrv")

#: The first descriptor systemd passes (after stdin, stdout and stderr), fixed by sd_listen_fds(3).
SD_LISTEN_FDS_START = 3

_passed: list[tuple[int, str]] | None = None


def passed_sockets() -> list[tuple[int, str]]:
    """``(fd, name)`` for each socket systemd passed to this process; ``[]`` when none.

    Read once per process: the variables are then removed from the environment and the
    descriptors marked close-on-exec, as ``sd_listen_fds(1)`` does.
    """
    global _passed
    if _passed is not None:
        return _passed
    env = os.environ
    passed: list[tuple[int, str]] = []
    try:
        pid_matches = int(env.get("LISTEN_PID", "")) == os.getpid()
        count = int(env.get("LISTEN_FDS", "0")) if pid_matches else 0
    except ValueError:
        count = 0
    if count > 0:
        names = env.get("LISTEN_FDNAMES", "").split(":")
        for i in range(count):
            fd = SD_LISTEN_FDS_START + i
            os.set_inheritable(fd, False)
            passed.append((fd, names[i] if i < len(names) and names[i] else "unknown"))
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    _passed = passed
    return passed


def listen_sockets(name: str | None) -> list[int]:
    """The descriptors for a ``"systemd"`` (``name`` None: all) or ``"systemd:NAME"`` entry.

    Raises ``ValueError`` naming the entry when systemd passed nothing that matches.
    """
    passed = passed_sockets()
    entry = "systemd" if name is None else f"systemd:{name}"
    if not passed:
        raise ValueError(f"listen: {entry!r}, but systemd passed no sockets (LISTEN_FDS is unset "
                         "or not for this process); start it from a .socket unit or "
                         "systemd-socket-activate")
    fds = [fd for fd, fd_name in passed if name is None or fd_name == name]
    if not fds:
        known = ", ".join(sorted({n for _, n in passed}))
        raise ValueError(f"listen: {entry!r}: systemd passed no socket named {name!r} "
                         f"(passed: {known}; set FileDescriptorName= in the .socket unit)")
    return fds


def notify_socket() -> str | None:
    """Where notifications go (``NOTIFY_SOCKET``), or None when not run by systemd."""
    return os.environ.get("NOTIFY_SOCKET") or None


def notify(*lines: str) -> bool:
    """Send ``lines`` (e.g. ``"READY=1"``) as one datagram to ``NOTIFY_SOCKET``; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(lines).encode(), address)
    except OSError as exc:
        log.debug("greensrv: cannot notify systemd at %s: %s", address, exc)
        return False
    return True


def reloading_lines() -> tuple[str, str]:
    """``RELOADING=1`` with the ``MONOTONIC_USEC=`` that ``Type=notify-reload`` asks for."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return "RELOADING=1", f"MONOTONIC_USEC={usec}"


def watchdog_interval() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WATCHDOG_USEC``), or None if not asked.

    ``WATCHDOG_PID``, when set, must be this process (systemd sets it to the main PID).
    """
    env = os.environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2e6
