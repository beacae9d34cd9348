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
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any

import gevent
from gevent import getcurrent
from gevent.event import Event
from gevent.hub import get_hub

from .connection_state import CLOSED, CLOSING, OPEN, READING, ConnectionState
from .errors import RecordTimeoutError, SlowClientError, TLSError
from .filters.base import NEED_DATA, Filter
from .limits import Limits
from .output_queue import EMPTIED, FELL_TO_LOW, OVER_LIMIT, ROSE_ABOVE_HIGH, OutputQueue
from .transport import PEER_GONE_ERRNOS, describe_handshake_failure, make_transport

if TYPE_CHECKING:
    from .server import Server

__all__ = ["Connection", "ConnectionHooks"]

_READY, _TIMEOUT, _WAKE = "ready", "timeout", "wake"

#: Bytes asked of the kernel per read: one read takes a typical burst of pipelined records,
#: and it is the most a client can make us buffer beyond one record.
RECV_SIZE = 65536

_monotonic = time.monotonic

class _Nothing:
    """put()'s "no record given" default (``put()`` queues nothing, like ``put(*[])``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no record>"


_NOTHING: Any = _Nothing()


class ConnectionHooks:
    """What a Connection reports to whoever made it. The defaults do nothing (a client).

    The server supplies one that counts statistics, reports to ``client_error`` and runs
    ``client_flushed``/``client_high``/``client_low``; a client supplies its own. A Connection
    never calls its owner in any other way.
    """

    #: Callbacks run in the connection's own greenlet on output events, by key: "flushed" (all
    #: queued output written), "high" (queued output rose past high_mark), "low" (back below
    #: low_mark). A missing key costs nothing.
    output_callbacks: Mapping[str, Callable[[Connection], Any]] = MappingProxyType({})

    def count(self, key: str) -> None:
        """A statistics counter went up by one, e.g. "closed_idle" or "tls_failures"."""

    def report_error(self, conn: Connection, exc: BaseException) -> None:
        """An output callback raised ``exc``; the server sends it to ``client_error``."""

    def closed(self, conn: Connection) -> None:
        """``conn``'s socket was closed; called exactly once, from ``close()``."""


#: Hooks that do nothing, for a Connection whose maker wants no reports.
NO_HOOKS = ConnectionHooks()


class Connection(OutputQueue):
    """One client: records in through ``get()``, records out through ``put()``.

    See ``docs/lifecycle.md`` for who calls what and when, and ``docs/backpressure.md`` for the
    watermarks.
    """

    __slots__ = (
        "__weakref__", "_bytes_in", "_bytes_out", "_state",
        "_discarded", "_eof_records", "_first_read",
        "error", "_events", "_event_glet", "_flush_cb", "_flush_event", "_hooks",
        "_idle_spent", "_in", "_limits",
        "_loop", "_partial_since", "_last_recv", "_rw", "_transport", "_waiting", "_writing", "_ww",
        "data", "id", "remote_address", "remote_ip",
        "remote_port", "server", "socket",
    )

    def __init__(self, sock: Any, address: Any, conn_id: int, in_filter: Filter,
                 out_filter: Filter, limits: Limits, hooks: ConnectionHooks = NO_HOOKS,
                 server: Server | None = None) -> None:
        #: The Server of a server-side connection, None for a client-side one. The connection
        #: itself never calls it: it reports through ``hooks`` and reads ``limits``.
        self.server = server
        self._limits = limits
        self._hooks = hooks
        self.socket = sock
        self.id = conn_id
        #: Per-client state for the application (POE's HEAP).
        self.data: dict[str, Any] = {}
        self.remote_address = address
        if isinstance(address, tuple):
            self.remote_ip: str | None = address[0]
            self.remote_port: int | None = address[1]
        else:  # a unix socket peer has a path (often empty), not an IP
            self.remote_ip = self.remote_port = None
        self._in = in_filter
        OutputQueue.__init__(self, out_filter, limits)
        self._loop = get_hub().loop
        self._transport: Any = None
        self._rw: Any = None
        self._ww: Any = None
        self._waiting: Any = None  # the greenlet parked in _wait(), if any
        self._writing = False  # the write watcher is started
        # The hub callback that will flush, if one is scheduled; a flush is coming whenever
        # this is set or _writing is.
        self._flush_cb: Any = None
        self._flush_event: Event | None = None
        self._events: deque[str] | None = None  # made on first use: a deque costs 760 bytes
        self._event_glet: Any = None
        self._eof_records: deque[Any] | None = None  # records the filter gave at EOF
        self._state = ConnectionState()
        self._first_read = True
        self._discarded = 0  # input bytes thrown away while closing (bounded by drain_limit)
        #: A deferred error (socket error, record timeout, slow reader) that ended this
        #: connection; the owner reports it once, then sets this back to None.
        self.error: BaseException | None = None
        self._idle_spent = 0.0
        self._partial_since: float | None = None  # when the unfinished record began arriving
        self._last_recv = 0.0
        self._bytes_in = 0
        self._bytes_out = 0

    def attach(self) -> None:
        """Start using the socket for I/O; the owner calls it once, after any TLS handshake."""
        self._transport = make_transport(self.socket)
        self._rw = self._loop.io(self.socket.fileno(), 1)

    def _write_watcher(self) -> Any:
        """The socket's write-readiness watcher, made on first need: most clients never fill
        their socket buffer, so most connections never need one."""
        if self._ww is None:
            self._ww = self._loop.io(self._rw.fd, 2)
        return self._ww

    # -- properties ----------------------------------------------------------------------------
    @property
    def local_address(self) -> Any:
        """The server's end of the connection, as ``socket.getsockname()`` gives it."""
        try:
            return self.socket.getsockname()
        except OSError:
            return None

    @property
    def bytes_in(self) -> int:
        """Bytes read from the socket so far."""
        return self._bytes_in

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
        return self._in

    def __repr__(self) -> str:
        output = self._state.output
        state = "closed" if output is CLOSED else "open" if output is OPEN else "closing"
        return f"<Connection #{self.id} {self.remote_address!r} {state}>"

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- input ---------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Any:
        """Return the next input record.

        Raises ``EOFError`` once no record is left and no more input will come, and
        ``TimeoutError`` after ``timeout`` seconds without a record (nothing is lost: the
        bytes received so far stay buffered for the next call).
        """
        if self._queued <= self._high:
            record = self._in.next_record()
            if record is not NEED_DATA:
                return record
            return self._get_slow(timeout, parsed=True)
        return self._get_slow(timeout)

    def __iter__(self) -> Iterator[Any]:
        # The per-record path of every handler-style server: records the filter parsed in bulk
        # are popped from its ready list while output stays below high_mark (set_input_filter
        # empties the old filter's list, which ends this inner loop); get() does the rest.
        high = self._high
        while True:
            ready = self._in.take_ready()
            while ready and self._queued <= high:
                yield ready.pop()
            try:
                record = self.get()
            except EOFError:
                return
            yield record

    def _get_slow(self, timeout: float | None, parsed: bool = False) -> Any:
        """get() past its fast path; ``parsed``: the filter was just asked and has no record."""
        deadline = None if timeout is None else _monotonic() + timeout
        just_read = False
        while True:
            if not parsed:
                # Backpressure: while output is above high_mark, no record is handed out (so a
                # handler cannot turn records already parsed into unbounded output) and
                # nothing is read. Once input has ended, parsed records are still handed out,
                # to be answered.
                if self._queued > self._high:
                    state = self._state
                    while self._queued > self._low and not state.input_stopped:
                        self._wait_for_drain(deadline)
                record = self._in.next_record()
                if record is not NEED_DATA:
                    if just_read:
                        # A record completes only right after a read: the one place where the
                        # unfinished record that record_timeout watches can end.
                        self._partial_since = None
                    return record
            parsed = False
            if self._eof_records:
                return self._eof_records.popleft()
            if self._state.input is not READING:
                raise EOFError("no more input from this client")
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
            if self._flush_cb is not None:
                # The handler put records and now waits for input: the burst is over, so send
                # it from here rather than from a hub callback after the switch.
                self._flush()
            reason = self._wait_readable(deadline)
            if reason is _READY and self._recv(transport) is not None:
                return

    def _recv(self, transport: Any) -> bytes | None:
        """One non-blocking read; None when nothing was there. Ends input at EOF or error."""
        try:
            data = transport.recv(RECV_SIZE)
        except OSError as exc:
            if exc.errno not in PEER_GONE_ERRNOS:
                self.error = exc
            self._end_of_input(peer_closed=False)
            return b""
        if data is None:
            return None
        if not data:
            self._end_of_input(peer_closed=True)
            return data
        self._idle_spent = 0.0
        self._last_recv = _monotonic()
        self._bytes_in += len(data)
        self._in.receive(data)
        return data

    def _end_of_input(self, peer_closed: bool) -> None:
        state = self._state
        if not peer_closed:  # a read error
            if not state.input_stopped:
                state.stop_input()
        elif not state.peer_eof:
            state.peer_closed()
            # The peer's last record may lack its terminator; the filter decides.
            records = self._in.feed_eof()
            if records:
                self._eof_records = deque(records)

    def _wait_readable(self, deadline: float | None) -> str:
        """Wait for input, honouring the get() deadline, idle_timeout and record_timeout."""
        limits = self._limits
        now = _monotonic()
        timeout = None if deadline is None else deadline - now
        idle_timeout = limits.idle_timeout
        idle_left = None
        if idle_timeout is not None:
            idle_left = idle_timeout - self._idle_spent
            if timeout is None or idle_left < timeout:
                timeout = idle_left
        record_left = None
        if limits.record_timeout is not None and self._in.pending_size():
            if self._partial_since is None:
                self._partial_since = self._last_recv
            record_left = self._partial_since + limits.record_timeout - now
            if timeout is None or record_left < timeout:
                timeout = record_left
        else:
            self._partial_since = None
        if timeout is not None and timeout <= 0:
            reason = _TIMEOUT
        else:
            watcher = self._write_watcher() if self._transport.wants_write else self._rw
            reason = self._wait(watcher, timeout)
            if idle_left is not None:
                self._idle_spent += _monotonic() - now
        if reason is not _TIMEOUT:
            return reason
        if idle_timeout is not None and self._idle_spent >= idle_timeout - 1e-3:
            self._hooks.count("closed_idle")
            self.stop_input()
            return _WAKE
        since, limit = self._partial_since, limits.record_timeout
        if since is not None and limit is not None and _monotonic() >= since + limit - 1e-3:
            self._hooks.count("closed_record_timeout")
            if self.error is None:
                self.error = RecordTimeoutError(
                    f"peer {self.remote_address!r} took more than record_timeout="
                    f"{limit:g} s to send one record "
                    f"({self._in.pending_size()} bytes of it received)")
            self.stop_input()
            return _WAKE
        if deadline is not None and _monotonic() >= deadline - 1e-3:
            raise TimeoutError("no record within the timeout")
        # libev timers count from the loop's cached time, so one armed late in a busy loop
        # iteration can fire early: no limit is reached yet, so wait again for the rest.
        return _WAKE

    def _wait_for_drain(self, deadline: float | None) -> None:
        """Reading is paused by backpressure: wait until output drains below low_mark."""
        if deadline is None:
            self._wait(None, None)
        else:
            timeout = deadline - _monotonic()
            if timeout <= 0 or (self._wait(None, timeout) is _TIMEOUT
                                and _monotonic() >= deadline - 1e-3):
                raise TimeoutError("no record within the timeout "
                                   "(reading paused by backpressure)")
        if self._partial_since is not None:  # the client could not send while we did not read
            self._partial_since = _monotonic()

    def _wait(self, watcher: Any, timeout: float | None) -> str:
        """Park this greenlet until the watcher fires, the timeout passes or _wake() is called."""
        glet = getcurrent()
        hub = get_hub()
        if glet is hub:
            raise RuntimeError("Connection I/O must not be called from the gevent hub")
        if self._waiting is not None:
            raise RuntimeError(f"{self!r} is already being read by another greenlet")
        self._waiting = glet
        timer = None
        if watcher is not None:
            watcher.start(glet.switch, _READY)
        if timeout is not None:
            timer = self._loop.timer(max(timeout, 0.0))
            timer.start(glet.switch, _TIMEOUT)
        try:
            result: str = hub.switch()
        finally:
            self._waiting = None
            if watcher is not None:
                watcher.stop()
            if timer is not None:
                timer.close()
        return result

    def _wake(self) -> None:
        """Hub callback: wake the parked reader so it re-checks the connection's state."""
        glet = self._waiting
        if glet is not None:
            glet.switch(_WAKE)

    def stop_input(self) -> None:
        """No more reading: a waiting get() returns the records already parsed, then EOF.

        The owner calls it to end input of a live connection (``Server.stop()``)."""
        state = self._state
        if not state.input_stopped:
            state.stop_input()
            if self._waiting is not None:
                self._loop.run_callback(self._wake)

    # -- output --------------------------------------------------------------------------------
    def put(self, record: Any = _NOTHING, /, *more: Any) -> None:
        """Encode records through the output filter and queue them; never blocks.

        ``put(*records)``: any number of records (spelled with a first parameter so that the
        usual single record is not packed into a tuple). On a closing or closed connection the
        records are discarded silently, so a broadcast may race a disconnect.
        """
        lazy = self._lazy
        if lazy is not None and type(record) is str and not more and record.isascii():
            # OutputQueue.queue_text, inlined: the per-record cost stays one list append.
            lazy.append(record)
            size = len(record) + self._lit_len
            queued = self._queued = self._queued + size
            if queued >= self._busy_mark:
                self._put_a_lot(queued - size)
            elif self._flush_cb is None and not self._writing:
                self._schedule_flush()
            return
        if self._state.output is not OPEN:
            return
        if record is _NOTHING:  # put() with no record: put(*[])
            return
        before = self.queue_records(record, more)
        if self._queued >= self._busy_mark:
            self._put_a_lot(before)
        elif self._flush_cb is None and not self._writing:
            self._schedule_flush()

    def _schedule_flush(self) -> None:
        """Send this burst's output once the putting greenlet yields (or waits for input)."""
        self._flush_cb = self._loop.run_callback(self._flush)

    def _put_a_lot(self, before: int) -> None:
        """put() past min(high_mark, INLINE_SEND_THRESHOLD): watermark, limit, inline send."""
        crossed = self.crossed_after_put(before)
        if crossed & ROSE_ABOVE_HIGH:
            self._output_event("high")
        if crossed & OVER_LIMIT:
            self._too_slow(self._queued)
        elif not self._writing:
            self._flush()

    def _too_slow(self, queued: int) -> None:
        self._hooks.count("closed_output_limit")
        self.error = SlowClientError(
            f"peer {self.remote_address!r} did not read its output: {queued} bytes queued, "
            f"past output_limit={self._output_limit}")
        self.close()

    def flush(self, timeout: float | None = None) -> None:
        """Block until every queued byte is written to the socket (or the connection closes).

        Raises ``TimeoutError`` if that takes longer than ``timeout`` seconds.
        """
        if not self._queued or self._state.output is CLOSED:
            return
        if self._flush_event is None:
            self._flush_event = Event()
        self._flush_event.clear()
        if not self._writing:
            self._flush()
        if (self._queued and self._state.output is not CLOSED
                and not self._flush_event.wait(timeout)):
            raise TimeoutError(f"{self._queued} bytes still queued after {timeout} s")

    def _flush(self) -> None:
        """Send as much queued output as the socket takes; runs in the hub or inline."""
        if self._flush_cb is not None:  # called before the scheduled callback ran: cancel it
            self._flush_cb.stop()
            self._flush_cb = None
        if self._state.output is CLOSED or self._transport is None:
            return
        self.encode_text()
        buf = self._outbuf
        before = len(buf)
        n = 0
        if before:
            try:
                n = self._transport.send(buf)
            except OSError as exc:
                self._write_failed(exc)
                return
            self._bytes_out += n
        crossed = self.sent(before, n)
        if crossed & FELL_TO_LOW:
            self._drained_below_low()
        if self._queued:
            self._start_writing()
            return
        self._stop_writing()
        if self._flush_event is not None:
            self._flush_event.set()
        if crossed & EMPTIED:
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
        self.discard()
        if self._state.output is OPEN:
            self._state.begin_closing()
        self._stop_writing()
        if self._flush_event is not None:
            self._flush_event.set()
        self.stop_input()

    def _send_fin(self) -> None:
        self._state.fin_sent()
        self._transport.shutdown_write()

    def _output_event(self, kind: str) -> None:
        """Run client_flushed/high/low in this connection's own greenlet, never in the hub."""
        callback = self._hooks.output_callbacks.get(kind)
        if callback is None or self._state.output is CLOSED:
            return
        if self._events is None:
            self._events = deque()
        self._events.append(kind)
        if self._event_glet is None:
            self._event_glet = gevent.spawn(self._run_output_events)

    def _run_output_events(self) -> None:
        hooks = self._hooks
        callbacks = hooks.output_callbacks
        events = self._events
        assert events is not None
        try:
            state = self._state
            while events and state.output is not CLOSED:
                kind = events.popleft()
                if kind == "flushed":
                    # Whatever client_flushed puts waits for the socket to be writable (an I/O
                    # poll) rather than a hub callback, so a fast reader cannot keep this
                    # connection's output loop from yielding to other clients and signals.
                    self._start_writing()
                try:
                    callbacks[kind](self)
                except Exception as exc:
                    hooks.report_error(self, exc)
        finally:
            self._event_glet = None

    # -- closing -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Close gracefully: no more input, queued output flushed, then FIN.

        Returns at once; ``put()`` discards from now on. The server drains unread input for up to
        ``drain_timeout`` seconds after FIN and closes the socket when the handler has ended.
        """
        if self._state.output is not OPEN:
            return
        self._state.begin_closing()
        self.end_output()
        self.stop_input()
        if self._transport is not None and not self._queued:
            self._send_fin()

    def close(self) -> None:
        """Close at once: queued output is discarded."""
        state = self._state
        if state.output is CLOSED:
            return
        state.closed()
        if not state.input_stopped:
            state.stop_input()
        self.discard()
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
            self.socket.close()
        except OSError:
            pass
        self._hooks.closed(self)

    def finish(self, deadline: float | None) -> None:
        """Graceful end in the owner's greenlet: flush, FIN, drain unread input, close.

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
        self.end_output()
        self.stop_input()
        now = _monotonic()
        limits = self._limits
        limit = now + limits.flush_timeout
        if deadline is not None:
            limit = min(limit, deadline)
        try:
            if self._queued:
                if not state.peer_eof:
                    self._rw.start(self._discard_input)
                try:
                    self.flush(max(limit - _monotonic(), 0.0))
                finally:
                    self._rw.stop()
            if state.peer_eof and not self._transport.is_tls:
                return  # all input was read, so close() sends a plain FIN, never a reset
            if state.output is CLOSING:
                self._send_fin()
            self._drain(min(limit, _monotonic() + limits.drain_timeout))
        except TimeoutError:
            pass  # the peer did not read in time: what is left is dropped at close
        finally:
            self.close()

    def _discard_input(self) -> None:
        """Hub callback while a closing connection flushes: read and drop what arrives."""
        try:
            data = self._transport.recv(RECV_SIZE)
        except OSError:
            data = b""
        if data is None:
            return
        self._discarded += len(data)
        if not data and not self._state.peer_eof:
            self._state.peer_closed()
        if not data or self._discarded >= self._limits.drain_limit:
            self._rw.stop()

    def _drain(self, until: float) -> None:
        """Read and discard what the peer still sends after FIN, for a bounded time."""
        transport = self._transport
        drain_limit = self._limits.drain_limit
        state = self._state
        while (state.output is not CLOSED and self._discarded < drain_limit
               and not state.peer_eof):
            try:
                data = transport.recv(RECV_SIZE)
            except OSError:
                return
            if data is None:
                timeout = until - _monotonic()
                if timeout <= 0 or self._wait(self._rw, timeout) is not _READY:
                    return
                continue
            if not data:
                return
            self._discarded += len(data)

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
            cert: dict[str, Any] | None = self.socket.getpeercert()
        except (ValueError, OSError):
            return None
        return cert

    def start_tls(self, context: Any, handshake_timeout: float | None = None) -> None:
        """Upgrade this plain connection to TLS mid-stream (STARTTLS), in the caller's greenlet.

        Queued output (the "go ahead" reply) is flushed in plaintext first. Input the client
        sent after its STARTTLS command but before the handshake is refused with TLSError:
        acting on it would let a man in the middle inject commands (CVE-2011-0411).
        Raises TLSError when the handshake fails or takes longer than ``handshake_timeout``
        (default: the server's).
        """
        from .tls import wrap_server_socket

        if self._transport is None or self._transport.is_tls:
            raise TLSError(f"{self!r} already uses TLS")
        if self._state.output is not OPEN:
            raise TLSError(f"{self!r} is closing")
        self.flush(self._limits.handshake_timeout)
        leftover = self._in.pending_size()
        if leftover:
            raise TLSError(f"client {self.remote_address!r} sent {leftover} bytes after its "
                           "STARTTLS command, before the TLS handshake; refusing them "
                           "(STARTTLS command injection)")
        if handshake_timeout is None:
            handshake_timeout = self._limits.handshake_timeout
        tls_sock = wrap_server_socket(self.socket, context)
        self.socket = tls_sock
        tls_sock.settimeout(handshake_timeout)
        try:
            tls_sock.do_handshake()
        except Exception as exc:
            self._hooks.count("tls_failures")
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
        self._in = new_filter
        if leftover:
            new_filter.receive(leftover)

    def set_output_filter(self, new_filter: Filter) -> None:
        """Encode records put from now on with ``new_filter``."""
        self.switch_output_filter(new_filter, more_to_come=self._state.output is OPEN)

