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
from types import TracebackType
from typing import TYPE_CHECKING, Any

from gevent import getcurrent
from gevent.event import Event
from gevent.hub import get_hub

from ._accelerate import accelerate
from .connection_fields import WAKE
from .connection_hooks import NO_HOOKS, ConnectionHooks
from .connection_output import OutputSide
from .connection_state import (
    CLOSED,
    CLOSING,
    DONE,
    OPEN,
    PEER_CLOSED,
    READING,
    STOPPED,
    ConnectionState,
)
from .errors import TLSError
from .filters.base import NEED_DATA, Filter
from .limits import Limits
from .output_queue import OutputQueue
from .transport import describe_handshake_failure, make_transport

if TYPE_CHECKING:
    from .proxy import ProxyHeader
    from .server import Server

__all__ = ["Connection", "ConnectionHooks", "attach", "finish", "stop_input"]


_monotonic = time.monotonic

class _Nothing:
    """put()'s "no record given" default (``put()`` queues nothing, like ``put(*[])``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<no record>"


_NOTHING: Any = _Nothing()

# put()'s ASCII test: str.isascii, bound through globals() so that Cython sees no assignment;
# compiled, the .pxd's inline _is_ascii (CPython's PyUnicode_IS_ASCII, one flag read instead of
# a method call) takes the name. gevent binds its compiled helpers the same way.
globals()["_is_ascii"] = str.isascii


class Connection(OutputSide):
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
      socket          the raw socket (TLS-wrapped under ``ssl_context``); reading or writing
                      it directly bypasses the filters and the output queue
      input_filter, output_filter   the filters in use (the same object for ``filter=``),
                      after any ``set_filter``
      buffered        bytes of output queued and not yet taken by the kernel
      bytes_in, bytes_out   bytes read from and taken by the socket so far
      peer_certificate  the peer's verified TLS certificate, or None
      closing         true from the moment ``shutdown()``, ``write_eof()`` or ``close()`` is
                      called
      closed          true once the socket is closed
    """

    __slots__ = ()  # the fields are ConnectionFields' (connection_fields.py)

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
        self._data: dict[str, Any] | None = None  # ``data``, made on first use
        self.remote_address = address
        #: The PROXY header this connection began with (``greensrv.proxy.ProxyHeader``), or
        #: None when the server does not use the PROXY protocol.
        self.proxy: ProxyHeader | None = None
        if isinstance(address, tuple):
            self.remote_ip: str | None = address[0]
            self.remote_port: int | None = address[1]
        else:  # a unix socket peer has a path (often empty), not an IP
            self.remote_ip = self.remote_port = None
        self._in = in_filter
        OutputQueue.__init__(self, out_filter, limits)
        # The hub of the thread that made it, which alone may run its I/O: looked up once here,
        # not at each wait.
        self._hub = get_hub()
        self._loop = self._hub.loop
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
        self._linger: Any = None  # the timer that ends a shutdown() nobody finishes
        self._first_read = True
        self._discarded = 0  # input bytes thrown away while closing (bounded by drain_limit)
        #: A deferred error (socket error, record timeout, slow reader) that ended this
        #: connection; the owner reports it once, then sets this back to None.
        self.error: BaseException | None = None
        self._idle_spent = 0.0
        self._partial_since: float | None = None  # when the unfinished record began arriving
        self._last_recv = 0.0
        self._accepted_at = _monotonic()
        self._read_wait_since: float | None = None  # set while waiting for input (shedding)
        self._bytes_in = 0
        self._bytes_out = 0

    def _attach(self) -> None:
        """Start using the socket for I/O; the maker calls it once, after any TLS handshake."""
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
        """The server's end of the connection, as ``socket.getsockname()`` gives it, or behind
        a proxy the address the client connected to, from its PROXY header."""
        if self.proxy is not None and self.proxy.destination is not None:
            return self.proxy.destination
        try:
            return self.socket.getsockname()
        except OSError:
            return None

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
        """The filter that frames input now (after any ``set_filter``/``set_input_filter``)."""
        return self._in

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
        if self._queued <= self._high:
            record = self._in.next_record()
            if record is not NEED_DATA:
                return record
            return self._get_slow(timeout, parsed=True)
        return self._get_slow(timeout)

    def __iter__(self) -> Connection:
        """``for record in conn``: records until EOF. The connection is its own iterator, in the
        compiled build and as Python alike (no generator object, and no generator frame on the
        stack of a parked handler); ``next(conn)`` is ``get()`` that ends with StopIteration."""
        return self

    def __next__(self) -> Any:
        # The per-record path of every handler-style server: records the filter parsed in bulk
        # are popped from its ready list while output stays below high_mark (set_input_filter
        # empties the old filter's list); get() does the rest.
        if self._queued <= self._high:
            ready = self._in.take_ready()
            if ready:
                return ready.pop()
        try:
            return self.get()
        except EOFError:
            raise StopIteration from None

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

    # -- output --------------------------------------------------------------------------------
    def put(self, record: Any = _NOTHING, /, *more: Any) -> None:
        """Encode records through the output filter and queue them; never blocks.

        ``put(*records)``: any number of records (spelled with a first parameter so that the
        usual single record is not packed into a tuple). On a closing or closed connection the
        records are discarded silently, so a broadcast may race a disconnect.
        """
        lazy = self._lazy
        if (lazy is not None and type(record) is str and not more
                and _is_ascii(record)):  # type: ignore[name-defined]  # noqa: F821
            # OutputQueue.queue_text, inlined: the per-record cost stays one list append.
            lazy.append(record)
            size = len(record) + self._lit_len
            queued = self._queued = self._queued + size
            if queued >= self._busy_mark:
                self._put_a_lot(queued - size)
            elif self._flush_cb is None and not self._writing:
                # _schedule_flush, inlined: the first record of each burst pays it.
                self._flush_cb = self._loop.run_callback(self._flush)
            return
        if self._state.output is not OPEN:
            return
        if record is _NOTHING:  # put() with no record: put(*[])
            return
        before = self._queue_records(record, more)
        if self._queued >= self._busy_mark:
            self._put_a_lot(before)
        elif self._flush_cb is None and not self._writing:
            self._schedule_flush()

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
        self._end_output()
        self._stop_input()
        if self._transport is None:
            return  # not attached yet: the maker finishes it
        limits = self._limits
        if self._queued:
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
        self._end_output()
        if self._transport is not None and not self._queued:
            self._send_fin()

    def close(self) -> None:
        """Close at once: queued output is discarded."""
        state = self._state
        if state.output is CLOSED:
            return
        state.closed()
        if state.input is READING or state.input is PEER_CLOSED:
            state.stop_input()
        self._discard()
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
            self.socket.close()
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
        self._end_output()
        self._stop_input()
        now = _monotonic()
        limits = self._limits
        limit = now + limits.flush_timeout
        if deadline is not None:
            limit = min(limit, deadline)
        try:
            if self._queued:
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
            cert: dict[str, Any] | None = self.socket.getpeercert()
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
        self.socket = tls_sock
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
        self._switch_output_filter(new_filter, more_to_come=self._state.output is OPEN)


# -- the makers' surface ---------------------------------------------------------------------
# What the server's per-client life, the Server and greensrv.connect/Client call on a
# connection they made. Functions, not methods, so that the Connection class (help(), dir(),
# the application's code) shows the application's API alone.

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


accelerate(globals(), "greensrv._c_connection", requires=("greensrv.connection_output",))
