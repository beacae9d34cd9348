"""The lifecycle of a connection as two named states, with every legal move in one table.

Input: READING → PEER_CLOSED (the peer's FIN: no more bytes, but records already parsed are
still handed out under backpressure) or STOPPED (we stopped reading: ``stop_input()``,
``shutdown()``, ``close()``, a timeout, a read error; the peer may still send, so closing
drains); either → DONE (both: stopped by us and nothing left to drain).

Output: OPEN → CLOSING (``shutdown()``, the graceful finish, a failed write: ``put()`` discards
from now on, what is queued is still sent) → FIN_SENT → CLOSED; any state but CLOSED may go
straight to CLOSED (``close()``).

Any other move raises :class:`IllegalTransition`: a bug in greensrv, never a peer's doing. Pure:
no socket, ssl or gevent import (h11's ``_state.py`` habit).
"""

from __future__ import annotations

from enum import Enum
from typing import NoReturn

from ._accelerate import accelerate

__all__ = ["CLOSED", "CLOSING", "DONE", "FIN_SENT", "OPEN", "PEER_CLOSED", "READING", "STOPPED",
           "ConnectionState", "IllegalTransition", "Input", "Output"]


class Input(Enum):
    READING = "reading"
    PEER_CLOSED = "peer closed"
    STOPPED = "stopped"
    DONE = "done"


class Output(Enum):
    OPEN = "open"
    CLOSING = "closing"
    FIN_SENT = "FIN sent"
    CLOSED = "closed"


READING, PEER_CLOSED, STOPPED, DONE = Input.READING, Input.PEER_CLOSED, Input.STOPPED, Input.DONE
OPEN, CLOSING, FIN_SENT, CLOSED = Output.OPEN, Output.CLOSING, Output.FIN_SENT, Output.CLOSED

#: Every legal move: state → the states it may go to. The named methods below make exactly
#: these moves (each checks its own sources, so a move costs one comparison or two, not a
#: table lookup: a connection makes several); tests/test_connection_state.py holds them to it.
INPUT_MOVES: dict[Input, frozenset[Input]] = {
    READING: frozenset({PEER_CLOSED, STOPPED}),
    PEER_CLOSED: frozenset({DONE}),
    STOPPED: frozenset({DONE}),
    DONE: frozenset(),
}
OUTPUT_MOVES: dict[Output, frozenset[Output]] = {
    OPEN: frozenset({CLOSING, CLOSED}),
    CLOSING: frozenset({FIN_SENT, CLOSED}),
    FIN_SENT: frozenset({CLOSED}),
    CLOSED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """Raised when a connection is asked to make a move its state table does not allow."""


class ConnectionState:
    """A connection's input and output states; change them only through the named methods."""

    __slots__ = ("input", "output")

    def __init__(self) -> None:
        self.input = READING
        self.output = OPEN

    def __repr__(self) -> str:
        return f"<ConnectionState input={self.input.value} output={self.output.value}>"

    # -- input ---------------------------------------------------------------------------------
    @property
    def input_stopped(self) -> bool:
        """We stopped reading (STOPPED or DONE)."""
        return self.input is STOPPED or self.input is DONE

    @property
    def peer_eof(self) -> bool:
        """The peer's FIN arrived (PEER_CLOSED or DONE): nothing is left to drain."""
        return self.input is PEER_CLOSED or self.input is DONE

    def stop_input(self) -> None:
        """We stop reading (stop, shutdown, close, a timeout, a read error)."""
        current = self.input
        if current is READING:
            self.input = STOPPED
        elif current is PEER_CLOSED:
            self.input = DONE
        else:
            _refuse("input", current, STOPPED)

    def peer_closed(self) -> None:
        """The peer's FIN arrived: no more input, and nothing is left to drain."""
        current = self.input
        if current is READING:
            self.input = PEER_CLOSED
        elif current is STOPPED:
            self.input = DONE
        else:
            _refuse("input", current, PEER_CLOSED)

    # -- output --------------------------------------------------------------------------------
    def begin_closing(self) -> None:
        """No more records accepted; what is queued is still sent."""
        if self.output is not OPEN:
            _refuse("output", self.output, CLOSING)
        self.output = CLOSING

    def fin_sent(self) -> None:
        """Everything queued was sent, then FIN (after TLS close_notify)."""
        if self.output is not CLOSING:
            _refuse("output", self.output, FIN_SENT)
        self.output = FIN_SENT

    def closed(self) -> None:
        """The socket is closed."""
        if self.output is CLOSED:
            _refuse("output", CLOSED, CLOSED)
        self.output = CLOSED


def _refuse(side: str, current: Input | Output, new: Input | Output) -> NoReturn:
    raise IllegalTransition(f"{side} cannot go from {current.value} to {new.value}")


# Compiled with _c_connection_state.pxd: a C type whose moves are C calls from the compiled
# Connection.
accelerate(globals(), "greensrv._c_connection_state")
