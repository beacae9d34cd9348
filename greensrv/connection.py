"""Connection: the one place where a socket meets a filter.

Ownership: the server creates a Connection per client and runs its handler in that client's
greenlet; the Connection owns the socket from then on and closes it exactly once.

Reading is demand-driven: bytes are read only when ``get()`` wants a record and queued output
is below ``high_mark``, so unread input stays in the kernel, not in our memory. Each read hands a
whole chunk to the input filter, which then yields records one at a time.

Writing never blocks the caller: ``put()`` appends encoded bytes to one output buffer and asks
the hub to flush it once per loop iteration (so records put in a burst leave in one ``send``).
When the output filter says an ASCII text record's wire form is just the record plus a terminator
(``Filter.ascii_terminator``, true of the default ``Line``), such records are queued as they are
and a whole burst is encoded with one ``join`` at flush time: the per-record cost of ``put()`` is
then a list append.
The flush runs in the hub, sends what the socket takes and leaves the rest to a write watcher.
Callbacks about output (``client_flushed``, ``client_high``, ``client_low``) never run in the hub
or in a broadcaster's greenlet: they run in a short-lived greenlet of this connection.

The Connection is composed of sans-IO parts it owns and acts on, none of which calls it back
(h11's ``Connection`` owning its state and its reader and writer): the input ``Filter``
(``_in``), the ``OutputQueue`` (``_queue``: bytes and watermark crossings), the
``ConnectionState`` (``_state``: the legal moves) and the ``InputClock`` (``_clock``: the idle
and record deadlines, the progress the shedder reads). The sockets, watchers and greenlets are
its own. Compiled, it is one C type whose parts are typed fields: every call on a part, and on
itself, is a C call (docs/compiled.md). Its maker (the server's per-client life, ``connect``)
drives it through the module-level functions at the end, not through methods the application
would see.
"""

from __future__ import annotations

import time
from _socket import socket as _OSSocket
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary, ref

import gevent.socket
from gevent import getcurrent, spawn
from gevent.event import Event
from gevent.hub import get_hub

from ._accelerate import accelerate
from .connection_hooks import NO_HOOKS, ConnectionHooks
from .connection_state import (
    CLOSED,
    CLOSING,
    DONE,
    FIN_SENT,
    OPEN,
    PEER_CLOSED,
    READING,
    STOPPED,
    ConnectionState,
)
from .errors import ConnectionShedError, RecordTimeoutError, SlowClientError, TLSError
from .filters.base import NEED_DATA, Filter
from .input_clock import IDLE, RECORD, InputClock
from .limits import Limits
from .output_queue import EMPTIED, FELL_TO_LOW, OVER_LIMIT, ROSE_ABOVE_HIGH, OutputQueue
from .transport import PEER_GONE_ERRNOS, describe_handshake_failure, make_transport

if TYPE_CHECKING:
    from .overload import Progress
    from .proxy import ProxyHeader
    from .server import Server

__all__ = ["INPUT_ENDED", "READY", "TIMEOUT", "WAIT_DRAIN", "WAIT_INPUT", "WAKE", "Connection",
           "ConnectionHooks", "accepted_at", "arm", "attach", "cooperative_socket", "disarm",
           "finish", "how_input_ended", "overload_progress", "poll", "run_events_by",
           "run_output_event", "shed", "stop_input"]

_monotonic = time.monotonic
# The input clock's reading at every read and wait (two per request): time.monotonic, bound
# through globals() so that Cython sees no assignment; compiled on Linux, the .pxd's inline
# _clock_now reads the same clock (CLOCK_MONOTONIC) with clock_gettime, without a Python call
# or a float object.
globals()["_clock_now"] = time.monotonic

#: What a wait ends with: the watcher fired, the timer did, or _wake() was called.
READY, TIMEOUT, WAKE = "ready", "timeout", "wake"


class _Why:
    """Why poll() has no record now: an object no filter can return as a record."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


#: Why poll() has no record now (idle_greenlets=False, greensrv.event_life).
WAIT_INPUT, WAIT_DRAIN, INPUT_ENDED = _Why("wait-input"), _Why("wait-drain"), _Why("input-ended")

#: Bytes asked of the kernel per read: one read takes a typical burst of pipelined records,
#: and it is the most a client can make us buffer beyond one record.
RECV_SIZE = 65536


class _Nothing:
    """put()'s "no record given" default (``put()`` queues nothing, like ``put(*[])``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no record>"


_NOTHING: Any = _Nothing()


class _End:
    """What ``_get_slow`` returns once input has ended: ``get()`` raises EOFError for it and
    ``__next__`` ends the iteration, so the end of input is no exception raised through the
    compiled frames below them."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<end of input>"


_END: Any = _End()


class _Flusher:
    """One hub's connections with fresh output, flushed by one hub callback per loop iteration
    rather than a callback made (and freed) per connection and burst: a put() that begins a
    burst appends its connection here. A connection that flushed by itself meanwhile (its
    handler asked for input) is skipped."""

    __slots__ = ("__weakref__", "_loop", "_pending", "_scheduled")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._pending: list[Connection] = []
        self._scheduled = False

    def add(self, conn: Connection) -> None:
        self._pending.append(conn)
        if not self._scheduled:
            self._scheduled = True
            self._loop.run_callback(self._run)

    def _run(self) -> None:
        self._scheduled = False
        pending = self._pending
        self._pending = []
        for conn in pending:
            conn._flush_if_due()


#: Each hub's flusher (a hub runs one thread's connections).
_FLUSHERS: WeakKeyDictionary[Any, _Flusher] = WeakKeyDictionary()
#: (a weak reference to the hub last asked for, its flusher), stored as one tuple so that
#: threads never see a hub paired with another's flusher: a new connection asks for the same
#: hub as the one before it, and the WeakKeyDictionary lookup is then skipped.
_LAST_FLUSHER: Any = None


def _flusher_of(hub: Any) -> _Flusher:
    global _LAST_FLUSHER
    last = _LAST_FLUSHER
    if last is not None and last[0]() is hub:
        found: _Flusher = last[1]
        return found
    flusher = _FLUSHERS.get(hub)
    if flusher is None:
        flusher = _FLUSHERS[hub] = _Flusher(hub.loop)
    _LAST_FLUSHER = (ref(hub), flusher)
    return flusher

# put()'s ASCII test: str.isascii, bound through globals() so that Cython sees no assignment;
# compiled, the .pxd's inline _is_ascii (CPython's PyUnicode_IS_ASCII, one flag read instead of
# a method call) takes the name. gevent binds its compiled helpers the same way.
globals()["_is_ascii"] = str.isascii


class Connection:
    """One connection, either side: records in through ``get()``, records out through ``put()``.

    A server makes one per accepted client and passes it to the handler and every callback;
    ``greensrv.connect`` (and ``greensrv.Client``) make one per connection to a server. Both
    sides have the same API (docs/api.md): ``get``, ``for record in conn``, ``put``, ``flush``,
    ``shutdown``, ``write_eof``, ``close``, ``start_tls``, ``set_filter``. The connection owns
    the socket and closes it. See ``docs/lifecycle.md`` for who calls what and when,
    ``docs/backpressure.md`` for the watermarks and ``docs/client.md`` for the client side.

    Attributes (set by its maker, read-only to the application except ``data``):
      data            a dict for the application's per-client state (POE's HEAP)
      id              an int unique within the server (within the process for a client)
      server          the :class:`~greensrv.Server` of a server-side connection
                      (``conn.server.connections`` are all live connections, for a
                      broadcast); None on a client-side one
      remote_address  the peer's address: ``(ip, port)``, or a unix path; behind a PROXY
                      header, the client's address the header names
      remote_ip, remote_port   its parts (``None`` for a unix peer)
      local_address   this end, as ``socket.getsockname()`` gives it (behind a PROXY header,
                      the address the client connected to)
      proxy           the ``greensrv.proxy.ProxyHeader`` the connection began with, or None
                      (a server without ``proxy_protocol``, and every client-side connection)
      socket          the connection's gevent socket (TLS-wrapped under ``ssl_context``);
                      reading or writing it directly bypasses the filters and the output
                      queue. A server's plain connection runs on the OS-level socket alone
                      and makes this object on first use (the same object from then on)
      input_filter, output_filter   the filters in use (the same object for ``filter=``),
                      after any ``set_filter``
      buffered        bytes of output queued and not yet taken by the kernel
      bytes_in, bytes_out   bytes read from and taken by the socket so far
      peer_certificate  the peer's verified TLS certificate, or None
      closing         true from the moment ``shutdown()``, ``write_eof()`` or ``close()`` is
                      called
      closed          true once the socket is closed
    """

    __slots__ = ("__weakref__", "_clock", "_data", "_discarded", "_eof_records", "_event_glet",
                 "_events", "_first_read", "_flush_due", "_flush_event", "_flusher", "_hooks",
                 "_hub", "_in", "_limits", "_linger", "_loop", "_queue", "_rw", "_state",
                 "_transport", "_waiting", "_writing", "_ww", "_bytes_out", "error", "id", "proxy",
                 "remote_address", "server", "_sock",
                 "_events_to", "_armed_timer")  # idle_greenlets=False (greensrv.event_life)

    def __init__(self, sock: Any, address: Any, conn_id: int, in_filter: Filter,
                 out_filter: Filter, limits: Limits, hooks: ConnectionHooks = NO_HOOKS,
                 server: Server | None = None) -> None:
        #: The Server of a server-side connection, None for a client-side one. The connection
        #: itself never calls it: it reports through ``hooks`` and reads ``limits``.
        self.server = server
        self._limits = limits
        self._hooks = hooks
        # An OS-level socket (``_socket.socket``, non-blocking) from the server's listener, or
        # any gevent socket (TLS, client_pre_connect, PROXY, the client side): ``socket``
        # makes the gevent socket of an OS-level one only when asked.
        self._sock = sock
        self.id = conn_id
        self._data: dict[str, Any] | None = None  # ``data``, made on first use
        self.remote_address = address
        #: The PROXY header this connection began with (``greensrv.proxy.ProxyHeader``), or
        #: None when the server does not use the PROXY protocol.
        self.proxy: ProxyHeader | None = None
        self._in = in_filter
        self._queue = OutputQueue(out_filter, limits)
        # The hub of the thread that made it, which alone may run its I/O: looked up once here,
        # not at each wait.
        self._hub = get_hub()
        self._loop = self._hub.loop
        self._transport: Any = None
        self._rw: Any = None
        self._ww: Any = None
        self._waiting: Any = None  # the greenlet parked in _wait(), if any
        self._writing = False  # the write watcher is started
        # This connection waits in its hub's flusher for the loop iteration's flush; a flush is
        # coming whenever this is set or _writing is.
        self._flush_due = False
        self._flusher = _flusher_of(self._hub)
        self._flush_event: Event | None = None
        self._events: deque[str] | None = None  # made on first use: a deque costs 760 bytes
        self._event_glet: Any = None
        self._eof_records: deque[Any] | None = None  # records the filter gave at EOF
        self._state = ConnectionState()
        self._linger: Any = None  # the timer that ends a shutdown() nobody finishes
        self._first_read = True
        self._discarded = 0  # input bytes thrown away while closing (bounded by drain_limit)
        #: A deferred error (socket error, record timeout, slow reader) that ended this
        #: connection; the owner reports it once, then sets this back to None.
        self.error: BaseException | None = None
        self._clock = InputClock(_monotonic())
        self._bytes_out = 0
        # idle_greenlets=False (greensrv.event_life): who runs the output events instead of
        # _event_glet, and the timer of an armed wait (see "greenlet-free input" below).
        self._events_to: Any = None
        self._armed_timer: Any = None

    def _attach(self) -> None:
        """Start using the socket for I/O; the maker calls it once, after any TLS handshake."""
        self._transport = make_transport(self._sock)
        self._rw = self._loop.io(self._sock.fileno(), 1)

    def _write_watcher(self) -> Any:
        """The socket's write-readiness watcher, made on first need: most clients never fill
        their socket buffer, so most connections never need one."""
        if self._ww is None:
            self._ww = self._loop.io(self._rw.fd, 2)
        return self._ww

    # -- properties ----------------------------------------------------------------------------
    @property
    def socket(self) -> Any:
        """The connection's gevent socket (an ``ssl.SSLSocket`` of gevent's under TLS).

        A server's plain connection reads and writes its OS-level socket and makes this
        object only here, on first use: the descriptor moves to it, and it is the same object
        from then on (closed with the connection)."""
        sock = self._sock
        if type(sock) is _OSSocket:
            sock = self._sock = cooperative_socket(sock)
            if self._transport is not None and self._state.output is not CLOSED:
                self._transport = make_transport(sock)  # the old one's socket lost its fd
        return sock

    @property
    def local_address(self) -> Any:
        """The server's end of the connection, as ``socket.getsockname()`` gives it, or behind
        a proxy the address the client connected to, from its PROXY header."""
        if self.proxy is not None and self.proxy.destination is not None:
            return self.proxy.destination
        try:
            return self._sock.getsockname()
        except OSError:
            return None

    @property
    def remote_ip(self) -> str | None:
        """The peer's IP address (None for a unix socket peer, which has a path)."""
        address = self.remote_address
        return address[0] if isinstance(address, tuple) else None

    @property
    def remote_port(self) -> int | None:
        """The peer's port (None for a unix socket peer)."""
        address = self.remote_address
        return address[1] if isinstance(address, tuple) else None

    @property
    def data(self) -> dict[str, Any]:
        """A dict for the application's per-client state (POE's HEAP). Made on first use: an
        empty dict is 64 bytes of every idle connection that never needs one."""
        data = self._data
        if data is None:
            data = self._data = {}
        return data

    @data.setter
    def data(self, value: dict[str, Any]) -> None:
        self._data = value

    @property
    def bytes_in(self) -> int:
        """Bytes read from the socket so far."""
        return self._clock.bytes_in

    @property
    def buffered(self) -> int:
        """Bytes queued for output and not yet taken by the kernel."""
        return self._queue.queued

    @property
    def bytes_out(self) -> int:
        """Bytes the kernel took for sending so far."""
        return self._bytes_out

    @property
    def limits(self) -> Limits:
        """The bounds this connection enforces (frozen; given by whoever made it)."""
        return self._limits

    @property
    def closed(self) -> bool:
        """True once the socket is closed."""
        return self._state.output is CLOSED

    @property
    def closing(self) -> bool:
        """True from the moment ``shutdown()`` or ``close()`` is called."""
        return self._state.output is not OPEN

    @property
    def input_filter(self) -> Filter:
        """The filter that frames input now (after any ``set_filter``/``set_input_filter``)."""
        return self._in

    @property
    def output_filter(self) -> Filter:
        """The filter that encodes output now (after any ``set_filter``)."""
        return self._queue.output_filter

    def __repr__(self) -> str:
        output = self._state.output
        state = "closed" if output is CLOSED else "open" if output is OPEN else "closing"
        return f"<Connection #{self.id} {self.remote_address!r} {state}>"

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """End of a ``with`` block: what was put is written first (for at most the limits'
        ``flush_timeout``) when the block ended normally, then the connection is closed; after
        an exception it is closed at once."""
        if exc_type is None:
            try:
                self.flush(self._limits.flush_timeout)
            except TimeoutError:
                pass  # the peer did not read in time: the rest is dropped, as close() does
        self.close()

    # -- input ---------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Any:
        """Return the next input record.

        Raises ``EOFError`` once no record is left and no more input will come, and
        ``TimeoutError`` after ``timeout`` seconds without a record (nothing is lost: the
        bytes received so far stay buffered for the next call).
        """
        queue = self._queue
        if queue.queued <= queue.high:
            record = self._in.next_record()
            if record is not NEED_DATA:
                return record
            record = self._get_slow(timeout, True)
        else:
            record = self._get_slow(timeout, False)
        if record is _END:
            raise EOFError("no more input from the server" if self._hooks.client_side
                           else "no more input from this client")
        return record

    def __iter__(self) -> Connection:
        """``for record in conn``: records until EOF. The connection is its own iterator, in the
        compiled build and as Python alike (no generator object, and no generator frame on the
        stack of a parked handler); ``next(conn)`` is ``get()`` that ends with StopIteration."""
        return self

    def __next__(self) -> Any:
        # The per-record path of every handler-style server: records the filter parsed in bulk
        # are popped from its ready list while output stays below high_mark (set_input_filter
        # empties the old filter's list); get() does the rest.
        queue = self._queue
        if queue.queued <= queue.high:
            ready = self._in.take_ready()
            if ready:
                return ready.pop()
        if type(self) is Connection:
            # get() without its EOFError: the end of input comes back as _END.
            record = self._get_slow(None, False)
        else:
            record = self._get_of_subclass()
        if record is _END:
            raise StopIteration
        return record

    def _get_of_subclass(self) -> Any:
        """A subclass may override get() (greensrv.testing's does): iterate through it. (Not in
        __next__ itself: its try block would deepen the stack every parked reader saves.)"""
        try:
            return self.get()
        except EOFError:
            return _END

    def _wake(self) -> None:
        """Hub callback: wake the parked reader so it re-checks the connection's state."""
        glet = self._waiting
        if glet is not None:
            glet.switch(WAKE)

    def _stop_input(self) -> None:
        """No more reading: a waiting get() returns the records already parsed, then EOF.

        The maker calls it to end input of a live connection (``Server.stop()``)."""
        state = self._state
        if state.input is READING or state.input is PEER_CLOSED:
            state.stop_input()
            if self._waiting is not None:
                self._loop.run_callback(self._wake)

    def _wait(self, watcher: Any, timeout: float | None) -> str:
        """Park this greenlet until the watcher fires, the timeout passes or _wake() is called.

        Every wait of the connection (input, a drain, a flush) is this one C call in the
        compiled build: one small frame on the stack a parked greenlet saves."""
        glet = getcurrent()
        hub = self._hub
        if glet is hub:
            raise RuntimeError("Connection I/O must not be called from the gevent hub")
        if self._waiting is not None:
            raise RuntimeError(f"{self!r} is already being read by another greenlet")
        self._waiting = glet
        timer = None
        if watcher is not None:
            watcher.start(glet.switch, READY)
        if timeout is not None:
            timer = self._loop.timer(max(timeout, 0.0))
            timer.start(glet.switch, TIMEOUT)
        try:
            result: str = hub.switch()
        finally:
            self._waiting = None
            self._clock.waiting_since = None  # set by _wait_readable for the shedder
            if watcher is not None:
                watcher.stop()
            if timer is not None:
                timer.close()
        return result

    def _get_slow(self, timeout: float | None, parsed: bool) -> Any:
        """get() past its fast path; ``parsed``: the filter was just asked and has no record.
        Returns the record, or _END once no record is left and no more input will come."""
        deadline = None if timeout is None else _monotonic() + timeout
        just_read = False
        while True:
            if not parsed:
                # Backpressure: while output is above high_mark, no record is handed out (so a
                # handler cannot turn records already parsed into unbounded output) and
                # nothing is read. Once input has ended, parsed records are still handed out,
                # to be answered.
                queue = self._queue
                if queue.queued > queue.high:
                    state = self._state
                    while queue.queued > queue.low and not state.input_stopped:
                        self._wait_for_drain(deadline)
                record = self._in.next_record()
                if record is not NEED_DATA:
                    if just_read:
                        # A record completes only right after a read: the one place where the
                        # unfinished record that record_timeout watches can end.
                        self._clock.partial_since = None
                    return record
            parsed = False
            if self._eof_records:
                return self._eof_records.popleft()
            if self._state.input is not READING:
                return _END
            self._read_more(deadline)
            just_read = True

    def _read_more(self, deadline: float | None) -> None:
        """Read one chunk into the input filter, or end input; waits as needed."""
        while True:
            if self._state.input is not READING:
                return
            transport = self._transport
            # Fairness: even when a read filled its buffer and more is surely waiting, the next
            # read goes through the hub's poll, so a client flooding input gets one RECV_SIZE
            # read per loop iteration, like every other ready client. Only bytes TLS already
            # decrypted (invisible to the poll) are read without waiting, and a new
            # connection's first read is tried at once: clients usually send right after
            # connecting, so their first request is often there already.
            if (self._first_read or transport.pending()) and self._recv(transport) is not None:
                self._first_read = False
                return
            self._first_read = False
            if self._flush_due:
                # The handler put records and now waits for input: the burst is over, so send
                # it from here rather than from the flusher's callback after the switch.
                self._flush()
            reason = self._wait_readable(deadline)
            if reason is READY and self._recv(transport) is not None:
                return

    def _recv(self, transport: Any) -> bytes | None:
        """One non-blocking read; None when nothing was there. Ends input at EOF or error."""
        try:
            data = transport.recv(RECV_SIZE)
        except OSError as exc:
            if exc.errno not in PEER_GONE_ERRNOS:
                self.error = exc
            self._end_of_input(False)
            return b""
        if data is None:
            return None
        if not data:
            self._end_of_input(True)
            return data
        self._clock.received(len(data), _clock_now())  # type: ignore[name-defined]  # noqa: F821
        self._in.receive(data)
        return data

    def _end_of_input(self, peer_closed: bool) -> None:
        state = self._state
        if not peer_closed:  # a read error
            if state.input is READING or state.input is PEER_CLOSED:
                state.stop_input()
        elif state.input is READING or state.input is STOPPED:
            state.peer_closed()
            # The peer's last record may lack its terminator; the filter decides.
            records = self._in.feed_eof()
            if records:
                self._eof_records = deque(records)
            if state.output is FIN_SENT:
                self.close()  # both directions have ended (write_eof): nothing is left to do

    def _wait_readable(self, deadline: float | None) -> str:
        """Wait for input, honouring the get() deadline and the input clock's limits
        (idle_timeout, the record clock)."""
        clock = self._clock
        now: float = _clock_now()  # type: ignore[name-defined]  # noqa: F821
        pending = self._in.pending_size()
        timeout = clock.limit(self._limits, now, pending)
        if deadline is not None and (timeout is None or deadline - now < timeout):
            timeout = deadline - now
        if timeout is not None and timeout <= 0:
            reason = TIMEOUT
        else:
            watcher = self._write_watcher() if self._transport.wants_write else self._rw
            clock.waiting_since = now  # _wait sets it back to None
            reason = self._wait(watcher, timeout)
            if self._limits.idle_timeout is not None:
                clock.waited(now, _monotonic())
        if reason is not TIMEOUT:
            return reason
        return self._timed_out(deadline, pending)

    def _timed_out(self, deadline: float | None, pending: int) -> str:
        """A wait for input timed out: apply the input clock's limit that ran out (input
        ends: WAKE), raise get()'s TimeoutError, or WAKE to wait again."""
        clock = self._clock
        expired = clock.expired(self._limits, _monotonic(), pending)
        if expired == IDLE:
            self._hooks.count("closed_idle")
            self._stop_input()
            return WAKE
        if expired == RECORD:
            self._hooks.count("closed_record_timeout")
            if self.error is None:
                why = clock.overdue_reason(self._limits, pending, _monotonic())
                self.error = RecordTimeoutError(f"peer {self.remote_address!r} {why}")
            self._stop_input()
            return WAKE
        if deadline is not None and _monotonic() >= deadline - 1e-3:
            raise TimeoutError("no record within the timeout")
        # libev timers count from the loop's cached time, so one armed late in a busy loop
        # iteration can fire early: no limit is reached yet, so wait again for the rest.
        return WAKE



    def _wait_for_drain(self, deadline: float | None) -> None:
        """Reading is paused by backpressure: wait until output drains below low_mark."""
        if deadline is None:
            self._wait(None, None)
        else:
            timeout = deadline - _monotonic()
            if timeout <= 0 or (self._wait(None, timeout) is TIMEOUT
                                and _monotonic() >= deadline - 1e-3):
                raise TimeoutError("no record within the timeout "
                                   "(reading paused by backpressure)")
        self._clock.drained(_monotonic())  # the client could not send while we did not read

    # -- greenlet-free input (idle_greenlets=False: greensrv.event_life) -------------------------
    # The connection's events run in a greenlet taken for each event; between events nothing
    # waits in a greenlet: the watcher (and the input clock's timer) call ``target.switch``
    # from the hub, as they would a parked reader's greenlet, and _wake() (stop_input(),
    # close(), output drained below low_mark) does the same through ``_waiting``.

    def _arm(self, target: Any, for_input: bool) -> None:
        """Wait without a greenlet: ``target.switch(reason)`` is called from the hub with READY
        (readable), TIMEOUT (the input clock's limit) or WAKE; ``for_input`` False: reading is
        paused by backpressure, and only the drain below low_mark (a WAKE) ends the wait."""
        self._waiting = target
        if not for_input:
            return
        clock = self._clock
        now = _clock_now()  # type: ignore[name-defined]  # noqa: F821
        timeout = clock.limit(self._limits, now, self._in.pending_size())
        watcher = self._write_watcher() if self._transport.wants_write else self._rw
        clock.waiting_since = now
        watcher.start(target.switch, READY)
        if timeout is not None:
            timer = self._armed_timer = self._loop.timer(max(timeout, 0.0))
            timer.start(target.switch, TIMEOUT)

    def _disarm(self, reason: str) -> None:
        """The armed wait ended with ``reason``; runs in the greenlet of the event it starts.
        Idle time is counted, and a limit of the input clock that ran out ends input."""
        self._waiting = None
        clock = self._clock
        since = clock.waiting_since
        clock.waiting_since = None
        timer = self._armed_timer
        if timer is not None:
            self._armed_timer = None
            timer.close()
        if since is None:  # the wait of a backpressure pause
            if reason is WAKE:
                clock.drained(_clock_now())  # type: ignore[name-defined]  # noqa: F821
            return
        self._rw.stop()
        if self._ww is not None and not self._writing:
            self._ww.stop()
        if self._limits.idle_timeout is not None:
            clock.waited(since, _clock_now())  # type: ignore[name-defined]  # noqa: F821
        if reason is TIMEOUT:
            self._timed_out(None, self._in.pending_size())

    def _poll(self, read: bool) -> Any:
        """get() without waiting: the next record, or why there is none now: WAIT_INPUT (arm
        for input), WAIT_DRAIN (output above high_mark: arm for the drain), or INPUT_ENDED.
        ``read``: the socket is readable; at most one read is made per call (fairness, as in
        _read_more), more only of what TLS already decrypted."""
        queue = self._queue
        if queue.queued <= queue.high and not read:  # records a read parsed in bulk (__next__)
            ready = self._in.take_ready()
            if ready:
                return ready.pop()
        state = self._state
        just_read = False
        while True:
            if queue.queued > queue.high and not state.input_stopped:
                return WAIT_DRAIN
            record = self._in.next_record()
            if record is not NEED_DATA:
                if just_read:
                    self._clock.partial_since = None  # as in _get_slow
                return record
            if self._eof_records:
                return self._eof_records.popleft()
            if state.input is not READING:
                return INPUT_ENDED
            transport = self._transport
            if read or self._first_read or transport.pending():
                read = self._first_read = False
                if self._recv(transport) is not None:
                    just_read = True
                    continue
            if self._flush_due:
                self._flush()  # the event's burst is over: send it now, as _read_more does
            return WAIT_INPUT

    # -- output --------------------------------------------------------------------------------
    def put(self, record: Any = _NOTHING, /, *more: Any) -> None:
        """Encode records through the output filter and queue them; never blocks.

        ``put(*records)``: any number of records (spelled with a first parameter so that the
        usual single record is not packed into a tuple). On a closing or closed connection the
        records are discarded silently, so a broadcast may race a disconnect.
        """
        queue = self._queue
        lazy = queue.lazy
        if (lazy is not None and type(record) is str and not more
                and _is_ascii(record)):  # type: ignore[name-defined]  # noqa: F821
            # OutputQueue.queue_text, inlined: the per-record cost stays one list append.
            lazy.append(record)
            size = len(record) + queue.lit_len
            queued = queue.queued = queue.queued + size
            if queued >= queue.busy_mark:
                self._put_a_lot(queued - size)
            elif not self._flush_due and not self._writing:
                # _schedule_flush, inlined: the first record of each burst pays it.
                self._flush_due = True
                self._flusher.add(self)
            return
        if self._state.output is not OPEN:
            return
        if record is _NOTHING:  # put() with no record: put(*[])
            return
        before = queue.queue_records(record, more)
        if queue.queued >= queue.busy_mark:
            self._put_a_lot(before)
        elif not self._flush_due and not self._writing:
            self._schedule_flush()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued byte is written to the socket (or the connection closes).

        Raises ``TimeoutError`` if that takes longer than ``timeout`` seconds.
        """
        if not self._queue.queued or self._state.output is CLOSED:
            return
        if self._flush_event is None:
            self._flush_event = Event()
        self._flush_event.clear()
        if not self._writing:
            self._flush()
        if (self._queue.queued and self._state.output is not CLOSED
                and not self._flush_event.wait(timeout)):
            raise TimeoutError(f"{self._queue.queued} bytes still queued after {timeout} s")

    def _schedule_flush(self) -> None:
        """Send this burst's output once the putting greenlet yields (or waits for input)."""
        self._flush_due = True
        self._flusher.add(self)

    def _put_a_lot(self, before: int) -> None:
        """put() past min(high_mark, INLINE_SEND_THRESHOLD): watermark, limit, inline send."""
        crossed = self._queue.crossed_after_put(before)
        if crossed & ROSE_ABOVE_HIGH:
            self._output_event("high")
        if crossed & OVER_LIMIT:
            self._too_slow(self._queue.queued)
        elif not self._writing:
            self._flush()

    def _too_slow(self, queued: int) -> None:
        self._hooks.count("closed_output_limit")
        self.error = SlowClientError(
            f"peer {self.remote_address!r} did not read its output: {queued} bytes queued, "
            f"past output_limit={self._limits.output_limit}")
        self.close()

    def _flush_if_due(self) -> None:
        """The flusher's call, in the hub: send this burst unless it was sent meanwhile."""
        if self._flush_due:
            self._flush()

    def _flush(self) -> None:
        """Send as much queued output as the socket takes; runs in the hub or inline."""
        self._flush_due = False  # the flusher's callback, if it is still to run, skips it
        if self._state.output is CLOSED or self._transport is None:
            return
        queue = self._queue
        before = queue.queued
        try:
            crossed = queue.send_queued(self._transport.send)
        except OSError as exc:
            self._write_failed(exc)
            return
        self._bytes_out += before - queue.queued
        if crossed & FELL_TO_LOW:
            self._drained_below_low()
        if queue.queued:
            self._start_writing()
            return
        if self._writing:  # _stop_writing, inlined: this runs once per flush
            self._writing = False
            self._ww.stop()
        if self._flush_event is not None:
            self._flush_event.set()
        if crossed & EMPTIED and "flushed" in self._hooks.output_callbacks:
            self._output_event("flushed")
        if self._state.output is CLOSING:
            self._send_fin()

    def _start_writing(self) -> None:
        """Let the write watcher send the rest as the socket becomes writable."""
        if not self._writing:
            self._writing = True
            self._write_watcher().start(self._flush)

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self._ww.stop()

    def _drained_below_low(self) -> None:
        if self._waiting is not None:
            self._loop.run_callback(self._wake)
        self._output_event("low")

    def _write_failed(self, exc: OSError) -> None:
        """The peer cannot take output any more: drop it and end the connection's input."""
        if exc.errno not in PEER_GONE_ERRNOS and self.error is None:
            self.error = exc
        self._queue.discard()
        if self._state.output is OPEN:
            self._state.begin_closing()
        self._stop_writing()
        if self._flush_event is not None:
            self._flush_event.set()
        self._stop_input()

    def _send_fin(self) -> None:
        state = self._state
        state.fin_sent()
        self._transport.shutdown_write()
        if state.input is PEER_CLOSED or state.input is DONE:
            self.close()  # the peer's EOF came first: both directions have ended
        elif self._linger is not None:
            self._start_linger(self._limits.drain_timeout)  # the drain after FIN begins

    def _start_linger(self, seconds: float) -> None:
        """shutdown() on its own: close by ourselves within ``seconds``, reading and dropping
        input meanwhile so that the peer's EOF closes at once (a handler or a client may never
        call get() again, and a client-side connection has nobody to finish it)."""
        if self._state.output is CLOSED:
            return
        if self._linger is not None:
            self._linger.close()
        self._linger = self._loop.timer(seconds)
        self._linger.start(self.close)
        if self._waiting is None:  # else a reader is parked on _rw: it leaves at once, EOF
            self._rw.start(self._discard_input)

    def _output_event(self, kind: str) -> None:
        """Run client_flushed/high/low in this connection's own greenlet, never in the hub."""
        callback = self._hooks.output_callbacks.get(kind)
        if callback is None or self._state.output is CLOSED:
            return
        if self._events_to is not None:  # idle_greenlets=False: one of the connection's events
            self._events_to.output_event(kind)
            return
        if self._events is None:
            self._events = deque()
        self._events.append(kind)
        if self._event_glet is None:
            self._event_glet = spawn(self._run_output_events)

    def _run_output_events(self) -> None:
        callbacks = self._hooks.output_callbacks
        events = self._events
        assert events is not None
        try:
            state = self._state
            while events and state.output is not CLOSED:
                self._run_output_event(events.popleft(), callbacks)
        finally:
            self._event_glet = None

    def _run_output_event(self, kind: str, callbacks: Any) -> None:
        """client_flushed/high/low ``kind`` now, in the caller's greenlet; errors reported."""
        if kind == "flushed":
            # Whatever client_flushed puts waits for the socket to be writable (an I/O
            # poll) rather than a hub callback, so a fast reader cannot keep this
            # connection's output loop from yielding to other clients and signals.
            self._start_writing()
        try:
            callbacks[kind](self)
        except Exception as exc:
            self._hooks.report_error(self, exc)

    def _discard_input(self) -> None:
        """Hub callback while a closing connection flushes: read and drop what arrives."""
        try:
            data = self._transport.recv(RECV_SIZE)
        except OSError:
            data = b""
        if data is None:
            return
        self._discarded += len(data)
        state = self._state
        if not data and (state.input is READING or state.input is STOPPED):
            state.peer_closed()
            if state.output is FIN_SENT:
                self.close()  # shutdown() and the peer's EOF: both directions have ended
                return
        if not data or self._discarded >= self._limits.drain_limit:
            self._rw.stop()

    def _drain(self, until: float) -> None:
        """Read and discard what the peer still sends after FIN, for a bounded time."""
        transport = self._transport
        drain_limit = self._limits.drain_limit
        state = self._state
        while (state.output is not CLOSED and self._discarded < drain_limit
               and (state.input is READING or state.input is STOPPED)):
            try:
                data = transport.recv(RECV_SIZE)
            except OSError:
                return
            if data is None:
                timeout = until - _monotonic()
                if timeout <= 0 or self._wait(self._rw, timeout) is not READY:
                    return
                continue
            if not data:
                return
            self._discarded += len(data)

    # -- closing -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Close gracefully: no more input, queued output flushed, then FIN.

        Returns at once; ``put()`` discards from now on. After the FIN, input that still comes
        is read and discarded for up to ``drain_timeout`` seconds (so the peer gets its data,
        not a reset), and the connection closes by itself: at the peer's EOF, or at the end of
        that time, even if nobody reads it and its handler goes on (a peer that reads nothing
        gets ``flush_timeout`` for the queued output first). To go on reading the replies
        after your last request, use :meth:`write_eof` instead.
        """
        if self._state.output is not OPEN:
            return
        self._state.begin_closing()
        self._queue.end_output()
        self._stop_input()
        if self._transport is None:
            return  # not attached yet: the maker finishes it
        limits = self._limits
        if self._queue.queued:
            self._start_linger(limits.flush_timeout + limits.drain_timeout)
        else:
            self._send_fin()
            self._start_linger(limits.drain_timeout)

    def write_eof(self) -> None:
        """Half-close: queued output is flushed, then FIN; input goes on.

        Records keep coming (``for reply in conn`` reads every reply) until the peer's EOF,
        after which the connection closes by itself. ``put()`` discards from now on.
        asyncio's ``write_eof``, trio's ``send_eof``.
        """
        if self._state.output is not OPEN:
            return
        self._state.begin_closing()
        self._queue.end_output()
        if self._transport is not None and not self._queue.queued:
            self._send_fin()

    def close(self) -> None:
        """Close at once: queued output is discarded."""
        state = self._state
        if state.output is CLOSED:
            return
        state.closed()
        if state.input is READING or state.input is PEER_CLOSED:
            state.stop_input()
        self._queue.discard()
        if self._linger is not None:
            self._linger.close()
            self._linger = None
        if self._rw is not None:
            self._rw.stop()
            self._stop_writing()
        if self._waiting is not None:
            self._loop.run_callback(self._wake)
        if self._flush_event is not None:
            self._flush_event.set()
        glet = self._event_glet
        if glet is not None and glet is not getcurrent():
            glet.kill(block=False)
        try:
            self._sock.close()
        except OSError:
            pass
        self._hooks.closed(self)

    def _finish(self, deadline: float | None) -> None:
        """Graceful end in the maker's greenlet: flush, FIN, drain unread input, close.

        ``deadline`` (a ``time.monotonic()`` value, or None) caps ``limits.flush_timeout`` and
        ``limits.drain_timeout``: a stopping server passes the end of its grace.

        While the output is flushed, input that keeps arriving is read and discarded (up to
        ``drain_limit``), so that a close at any point, even a forced one, finds little or no
        unread input and the kernel sends FIN rather than a reset that would destroy replies
        the peer has not read yet.
        """
        state = self._state
        if state.output is CLOSED:
            return
        if state.output is OPEN:
            state.begin_closing()
        self._queue.end_output()
        self._stop_input()
        now = _monotonic()
        limits = self._limits
        limit = now + limits.flush_timeout
        if deadline is not None:
            limit = min(limit, deadline)
        try:
            if self._queue.queued:
                if (state.input is READING or state.input is STOPPED):
                    self._rw.start(self._discard_input)
                try:
                    self.flush(max(limit - _monotonic(), 0.0))
                finally:
                    self._rw.stop()
            if (state.input is PEER_CLOSED or state.input is DONE) and not self._transport.is_tls:
                return  # all input was read, so close() sends a plain FIN, never a reset
            if state.output is CLOSING:
                self._send_fin()
            self._drain(min(limit, _monotonic() + limits.drain_timeout))
        except TimeoutError:
            pass  # the peer did not read in time: what is left is dropped at close
        finally:
            self.close()

    # -- TLS -----------------------------------------------------------------------------------
    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        """The client's verified certificate (``SSLSocket.getpeercert()``), or None.

        None on a plain connection or when the client sent no certificate; an empty dict when
        the context does not verify client certificates (``verify_mode`` CERT_NONE).
        """
        if self._transport is None or not self._transport.is_tls:
            return None
        try:
            cert: dict[str, Any] | None = self._sock.getpeercert()
        except (ValueError, OSError):
            return None
        return cert

    def start_tls(self, context: Any, server_hostname: str | None = None, *,
                  handshake_timeout: float | None = None) -> None:
        """Upgrade this plain connection to TLS mid-stream (STARTTLS), in the caller's greenlet.

        A server-side connection handshakes as the TLS server; a client-side one (from
        ``greensrv.connect`` or a ``Client``) as the TLS client, checking the server's
        certificate against ``server_hostname`` (default: the host name connected to) when
        the context checks host names, as ``ssl.create_default_context()`` does.
        Queued output (the STARTTLS command, or the server's "go ahead" reply) is flushed in
        plaintext first. Input the peer sent after that but before the handshake is refused
        with TLSError: acting on it would let a man in the middle inject commands
        (CVE-2011-0411). Raises TLSError when the handshake fails or takes longer than
        ``handshake_timeout`` (default: the limits').
        """
        from .addresses import format_address
        from .tls import describe_client_handshake_failure, wrap_client_socket, wrap_server_socket

        if self._transport is None or self._transport.is_tls:
            raise TLSError(f"{self!r} already uses TLS")
        if self._state.output is not OPEN:
            raise TLSError(f"{self!r} is closing")
        if server_hostname is not None and not isinstance(server_hostname, str):
            raise TypeError(f"start_tls: server_hostname must be a str, not "
                            f"{type(server_hostname).__name__}")
        self.flush(self._limits.handshake_timeout)
        leftover = self._in.pending_size()
        hooks = self._hooks
        peer = "server" if hooks.client_side else "client"
        if leftover:
            after = "its go-ahead" if hooks.client_side else "its STARTTLS command"
            raise TLSError(f"{peer} {self.remote_address!r} sent {leftover} bytes after {after}, "
                           "before the TLS handshake; refusing them (STARTTLS command injection)")
        if handshake_timeout is None:
            handshake_timeout = self._limits.handshake_timeout
        if hooks.client_side:
            tls_sock = wrap_client_socket(self.socket, context,
                                          server_hostname or hooks.server_hostname,
                                          format_address(self.remote_address))
        else:
            tls_sock = wrap_server_socket(self.socket, context)
        self._sock = tls_sock
        tls_sock.settimeout(handshake_timeout)
        try:
            tls_sock.do_handshake()
        except Exception as exc:
            hooks.count("tls_failures")
            if hooks.client_side:
                raise TLSError(describe_client_handshake_failure(
                    format_address(self.remote_address), exc)) from None
            raise TLSError(describe_handshake_failure(self.remote_address, exc)) from None
        self._transport = make_transport(tls_sock)

    # -- filters -------------------------------------------------------------------------------
    def set_filter(self, new_filter: Filter) -> None:
        """Use ``new_filter`` (itself, not a clone) both ways; unparsed input carries over."""
        self.set_input_filter(new_filter)
        self.set_output_filter(new_filter)

    def set_input_filter(self, new_filter: Filter) -> None:
        """Parse input with ``new_filter`` from the next record on; unparsed bytes carry over."""
        old = self._in
        if new_filter is old:
            return
        # Taken, not copied: the old filter forgets these bytes (and its parsed records, which
        # also ends __iter__'s pass over them), so using it again never parses them twice.
        leftover = old.take_pending()
        if self._hooks.client_side:
            new_filter.use_on_client()
        self._in = new_filter
        if leftover:
            new_filter.receive(leftover)

    def set_output_filter(self, new_filter: Filter) -> None:
        """Encode records put from now on with ``new_filter``."""
        if self._hooks.client_side:
            new_filter.use_on_client()
        self._queue.switch_output_filter(new_filter, self._state.output is OPEN)


def cooperative_socket(sock: Any) -> Any:
    """A gevent socket over the OS-level socket ``sock``'s descriptor, which moves to it
    (``sock`` is left detached: closing it is harmless). A closed ``sock`` gives a closed one."""
    fd = sock.fileno()
    if fd == -1:
        closed = gevent.socket.socket(sock.family, sock.type, sock.proto)
        closed.close()
        return closed
    return gevent.socket.socket(sock.family, sock.type, sock.proto, fileno=sock.detach())


# -- the makers' surface ---------------------------------------------------------------------
# What the server's per-client life, the Server, its shedder and greensrv.connect/Client call
# on a connection they made. Functions, not methods, so that the Connection class (help(),
# dir(), the application's code) shows the application's API alone; compiled, each is a C
# function making C calls on the connection.

def attach(conn: Connection) -> None:
    """Start ``conn``'s I/O on its socket; its maker calls it once, after any TLS handshake."""
    conn._attach()


def finish(conn: Connection, deadline: float | None) -> None:
    """End ``conn`` gracefully in its maker's greenlet: flush, FIN, drain, close (the maker's
    step once the handler has returned). ``deadline`` (monotonic) caps the flush and drain."""
    conn._finish(deadline)


def stop_input(conn: Connection) -> None:
    """End ``conn``'s input: a waiting ``get()`` returns the records parsed, then EOF."""
    conn._stop_input()


def how_input_ended(conn: Connection) -> str:
    """What ended ``conn``'s input, for the connection log: "idle" (idle_timeout ran out),
    "peer" (the peer closed first), or "" (anything else, or not ended)."""
    if conn._clock.idle_ran_out(conn._limits):
        return "idle"
    return "peer" if conn._state.peer_eof else ""


def accepted_at(conn: Connection) -> float:
    """When ``conn`` was made (``time.monotonic()``), for the duration its end reports."""
    return conn._clock.accepted_at


def overload_progress(conn: Connection) -> Progress:
    """``conn`` as shedding sees it (``greensrv.overload.ShedPolicy``), from its input clock."""
    return conn._clock.progress(conn._state.input is READING, conn._in.pending_size())


def shed(conn: Connection, error: ConnectionShedError) -> None:
    """Close ``conn`` now to make room at capacity (the server's shedder): the handler's get()
    sees EOF, and ``error`` reaches client_error once the handler has ended."""
    if conn.error is None:
        conn.error = error
    conn.close()


# -- the greenlet-free life's surface (idle_greenlets=False: greensrv.event_life) -----------

def run_events_by(conn: Connection, events: Any) -> None:
    """From now on ``events.output_event(kind)`` gets ``conn``'s client_flushed/high/low
    instead of a greenlet of the connection's own."""
    conn._events_to = events


def arm(conn: Connection, target: Any, for_input: bool) -> None:
    """Wait for input (``for_input``) or for output to drain below low_mark, without a
    greenlet: the hub calls ``target.switch(READY | TIMEOUT | WAKE)``."""
    conn._arm(target, for_input)


def disarm(conn: Connection, reason: str) -> None:
    """End the armed wait that ``reason`` ended (in the greenlet that runs the next event)."""
    conn._disarm(reason)


def poll(conn: Connection, read: bool) -> Any:
    """The next input record without waiting, or WAIT_INPUT, WAIT_DRAIN or INPUT_ENDED."""
    return conn._poll(read)


def run_output_event(conn: Connection, kind: str) -> None:
    """Run ``conn``'s client_flushed/high/low ``kind`` now (unless it is closed)."""
    if conn._state.output is not CLOSED:
        conn._run_output_event(kind, conn._hooks.output_callbacks)


accelerate(globals(), "greensrv._c_connection",
           requires=("greensrv.filters.base", "greensrv.output_queue",
                     "greensrv.connection_state", "greensrv.input_clock"))
