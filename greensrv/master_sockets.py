"""The master's listening sockets: opened once, inherited by every worker it forks.

The master keeps plain (not gevent) sockets: a gevent socket belongs to a hub, and each worker
replaces the hub it inherits. A worker gets the inherited socket objects themselves; with
``reuse_port`` it gets, for each TCP address, its own ``SO_REUSEPORT`` socket instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable

from .addresses import ListenSpec, bound_address, format_address, open_listening, reuse_port_socket
from .defaults import DEFAULT_BACKLOG

__all__ = ["MasterSockets"]


class MasterSockets:
    """Opens every ``listen`` entry once; owns the sockets (and unix files) until ``close()``.

    A start-up error is the :class:`~greensrv.errors.StartupError` of
    ``addresses.open_listening``, naming the address.
    """

    def __init__(self, specs: Iterable[ListenSpec], reuse_port: bool,
                 backlog: int = DEFAULT_BACKLOG) -> None:
        self.reuse_port = reuse_port
        self.backlog = backlog
        self._open = open_listening(specs, reuse_port=reuse_port, for_master=True,
                                    backlog=backlog)

    @property
    def addresses(self) -> list[str]:
        """What the master listens on, as its log and STATUS line show it."""
        return [format_address(bound_address(each.sock)) for each in self._open]

    def worker_sockets(self) -> list[socket.socket]:
        """The listening sockets for a worker (call it in the worker, after the fork)."""
        return [reuse_port_socket(each.sock, backlog=self.backlog)
                if self.reuse_port and each.spec.kind == "tcp" else each.sock
                for each in self._open]

    def close(self) -> None:
        """Close every socket and unlink the unix socket files; idempotent."""
        for each in self._open:
            each.sock.close()
            if each.unix_path:
                try:
                    os.unlink(each.unix_path)
                except OSError:
                    pass
        self._open = []
