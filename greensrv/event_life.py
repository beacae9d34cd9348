"""Idle connections without a greenlet: ``Server(..., idle_greenlets=False)``.

A callback-style connection spends most of its life waiting for input. With a greenlet of its
own, that wait keeps the greenlet's saved stack and frames (about two thirds of an idle
connection's memory). Here a waiting connection holds only its watcher (and the input clock's
timer): the hub calls :meth:`EventClient.switch` when it fires, as it would switch to a parked
reader, and each event of the connection then runs in a greenlet taken for it from a small
pool: ``client_input`` for the records of one read, ``client_flushed``/``client_high``/
``client_low``, and the end (the graceful finish and ``client_disconnected``).
``client_connected`` and the first read run in the client's own greenlet (made at accept, where
the PROXY header, ``client_pre_connect`` and the TLS handshake run too), which then ends.

One connection's events never overlap and keep their order: a connection is either armed
(waiting, no greenlet) or busy (one greenlet runs its event, and whatever arrives meanwhile
waits for it). A callback may block; then only its connection waits, and its input is not
read meanwhile.

Counting: the admission's ``clients`` holds, for such a connection, the :class:`EventClient`
while it is armed and the greenlet running its event while it is busy, swapped in one step:
``concurrency`` counts connections, a forced stop kills the greenlets of the busy ones (the
armed ones end once closed), and ``gevent.getcurrent() in clients`` still says "a client's
greenlet" (``Server.stop()`` from a callback does not wait for itself).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from gevent import Greenlet, getcurrent, killall
from gevent.hub import get_hub

from ._accelerate import accelerate
from .connection import (
    INPUT_ENDED,
    READY,
    WAIT_DRAIN,
    WAIT_INPUT,
    WAKE,
    Connection,
    arm,
    disarm,
    poll,
    run_events_by,
    run_output_event,
)

__all__ = ["EventClient", "EventLife"]

#: Idle event greenlets kept for the next events. A busy server needs as many as events run
#: at once (one per callback that blocks, else about one); more are made when needed and end
#: after their event. 32 idle ones cost ~0.1 MB at most and make new greenlets rare.
POOL_SIZE = 32

#: An EventClient's state: waiting without a greenlet, running an event, or ending.
ARMED, BUSY, ENDING = 0, 1, 2


class EventGreenlet(Greenlet):
    """A greenlet of the pool; like the client greenlets, it keeps no spawning stack."""

    __slots__ = ()
    spawning_stack_limit = 0


class EventClient:
    """One greenlet-free connection: its state, its output events waiting for their turn,
    and what its owner needs to end it (``rest``, opaque here)."""

    __slots__ = ("conn", "life", "pending", "rest", "state")

    def __init__(self, life: EventLife, conn: Connection, rest: Any) -> None:
        self.life = life
        self.conn = conn
        self.rest = rest
        self.state = BUSY
        self.pending: list[str] | None = None  # output events waiting for their turn

    def switch(self, reason: str) -> None:
        """The hub: the armed wait ended (READY, TIMEOUT or WAKE); run the next event."""
        self.life.dispatch(self, reason)

    def output_event(self, kind: str) -> None:
        """The connection's client_flushed/high/low (from any greenlet, or the hub): queued
        for this connection's next turn; an armed connection takes one at once."""
        pending = self.pending
        if pending is None:
            pending = self.pending = []
        pending.append(kind)
        if self.state == ARMED:
            get_hub().loop.run_callback(self.switch, WAKE)

    def __repr__(self) -> str:
        return f"<EventClient {self.conn!r} {('armed', 'busy', 'ending')[self.state]}>"


class EventLife:
    """The greenlet-free part of a client_input server's clients (see the module).

    ``conclude(client, exc, killed)`` is the owner's end of a connection's life, run in the
    greenlet of its last event: report ``exc`` (unless None), finish gracefully (unless
    ``killed``), close, ``client_disconnected``, and forget the current greenlet in
    ``clients``.
    """

    def __init__(self, client_input: Callable[[Connection, Any], Any], shutdown_on_error: bool,
                 report_error: Callable[[Connection, BaseException], Any], clients: set[Any],
                 conclude: Callable[[EventClient, BaseException | None, bool], None]) -> None:
        self.client_input = client_input
        self.shutdown_on_error = shutdown_on_error
        self.report_error = report_error
        self.clients = clients
        self.conclude = conclude
        #: Parked greenlets of the pool, ready for an event (a deque: a list would realloc as
        #: it goes from empty to one greenlet and back, at every event).
        self.idle: deque[EventGreenlet] = deque()
        #: The server has stopped: the pool keeps no greenlet any more.
        self.released = False
        # The next event (dispatch() to the greenlet it switches to).
        self._client: EventClient | None = None
        self._reason: Any = None

    def adopt(self, conn: Connection, rest: Any) -> bool:
        """In the client's own greenlet, after client_connected: its first event (the input
        already there), then the connection waits without it. False when input ended within
        that event: the caller ends the connection as usual. client_input's error (with
        client_shutdown_on_error) propagates."""
        client = EventClient(self, conn, rest)
        run_events_by(conn, client)
        try:
            ended = self.run(client, True) is INPUT_ENDED
        except BaseException as exc:
            run_events_by(conn, None)
            if client.pending and isinstance(exc, Exception):
                self._output_events(client)
            raise
        if ended:
            run_events_by(conn, None)  # output events of the end: the connection's own way
            return False
        clients = self.clients
        clients.discard(getcurrent())
        clients.add(client)
        client.state = ARMED
        return True

    def run(self, client: EventClient, read: bool) -> Any:
        """One event's work: output events in order, and client_input for each record there
        is, until the connection must wait (then armed: WAIT_INPUT) or its input has ended
        (INPUT_ENDED). ``read``: the socket is readable."""
        conn = client.conn
        client_input = self.client_input
        while True:
            if client.pending:
                self._output_events(client)
            record = poll(conn, read)
            read = False
            if record is INPUT_ENDED:
                if client.pending:
                    self._output_events(client)
                return INPUT_ENDED
            if record is WAIT_INPUT or record is WAIT_DRAIN:
                if client.pending:  # came while poll() flushed: their turn first
                    continue
                arm(conn, client, record is WAIT_INPUT)
                return WAIT_INPUT
            try:
                client_input(conn, record)
            except Exception as exc:
                if self.shutdown_on_error:
                    raise
                self.report_error(conn, exc)

    def _output_events(self, client: EventClient) -> None:
        pending = client.pending
        assert pending is not None
        client.pending = None
        for kind in pending:
            run_output_event(client.conn, kind)

    def release(self) -> None:
        """The server has stopped: end the pool's parked greenlets, and park none from now."""
        self.released = True
        idle, self.idle = self.idle, deque()
        if idle:
            killall(list(idle), block=False)

    def _conclude(self, client: EventClient, exc: BaseException | None) -> None:
        """The connection's last event: its output callbacks still waiting, then its end.
        Those of the graceful finish run as with idle_greenlets=True, in a greenlet of the
        connection's own that the close kills if need be."""
        client.state = ENDING
        run_events_by(client.conn, None)
        if client.pending:
            self._output_events(client)
        self.conclude(client, exc, False)

    # -- in the hub ----------------------------------------------------------------------------
    def dispatch(self, client: EventClient, reason: str) -> None:
        """Run ``client``'s next event in a greenlet of the pool (a new one if none is
        idle), which takes its place in ``clients`` for the event's duration."""
        if client.state != ARMED:
            return  # a wake-up the running event has made stale
        client.state = BUSY
        clients = self.clients
        clients.discard(client)
        # Handed over in fields, not as switch() arguments: no tuple made and taken apart.
        self._client = client
        self._reason = reason
        idle = self.idle
        worker = idle.pop() if idle else EventGreenlet(self._work)
        clients.add(worker)
        worker.switch()

    # -- in a greenlet of the pool -------------------------------------------------------------
    def _work(self) -> None:
        me = getcurrent()
        hub_switch = me.parent.switch
        idle = self.idle
        try:
            while True:
                client, reason = self._client, self._reason
                self._client = self._reason = None  # a parked greenlet holds no connection
                assert client is not None
                self._event(client, reason, me)
                client = None
                if len(idle) >= POOL_SIZE or self.released:
                    return
                idle.append(me)
                hub_switch()
        finally:  # killed while parked (release(), or anyone): never switch to it again
            if me in idle:
                idle.remove(me)

    def _event(self, client: EventClient, reason: str, me: Any) -> None:
        conn = client.conn
        try:
            try:
                disarm(conn, reason)
                outcome = self.run(client, reason is READY)
            except Exception as exc:
                self._conclude(client, exc)
                return
            if outcome is INPUT_ENDED:
                self._conclude(client, None)
                return
        except BaseException:  # killed (a forced stop): end it here, as a killed client's
            if client.state != ENDING:  # greenlet does
                client.state = ENDING
                self.conclude(client, None, True)
            raise
        clients = self.clients
        clients.discard(me)
        clients.add(client)
        client.state = ARMED


# Compiled with _c_event_life.pxd: each event's dispatch and its per-record loop run in C.
accelerate(globals(), "greensrv._c_event_life", requires=("greensrv.connection",))
