"""Helpers for testing code built on greensrv; safe to import in any test suite.

:func:`serving` runs a server on a free loopback port for the length of a ``with`` block, stops
it quickly, and raises there what the handler or a callback raised; :func:`connect` opens a
client connection to it that cooperates with the server's greenlets (a stdlib ``socket`` would
block the hub, and the server with it: see ``docs/testing.md``), and whose reads give up after
:data:`READ_TIMEOUT` with a message rather than waiting for pytest-timeout.
:func:`check_filter` proves a filter, built-in or your own, frames correctly under any chunking
of the wire: the property every server relies on, since TCP delivers bytes in whatever pieces
the network chooses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .connection import Connection
from .dial import connect_as
from .errors import FilterError
from .filters.base import Filter, pull_records
from .server import Server

__all__ = ["CONNECT_TIMEOUT", "READ_TIMEOUT", "TestConnection", "check_filter", "connect",
           "serving"]

#: Seconds a test's connect may take: far above a loopback connect, so reaching it means the
#: server is not listening, and the test fails instead of hanging.
CONNECT_TIMEOUT = 5.0
#: Seconds a test's ``get()`` (or ``for record in conn``) waits by default: far above any
#: loopback reply, and far below pytest-timeout, so a forgotten reply fails with a message.
READ_TIMEOUT = 10.0

#: The options of a Server whose callables serving() watches for exceptions.
_APPLICATION_CALLBACKS = ("client_input", "client_connected", "client_disconnected",
                          "client_flushed", "client_high", "client_low")


@contextmanager
def serving(handler: Callable[[Connection], Any] | None = None, *, stop_timeout: float = 0.0,
            reraise: bool = True, **options: Any) -> Iterator[Server]:
    """``with serving(handler, **options) as server:`` a started ``Server`` on 127.0.0.1 and a
    port the OS picks (``server.address``) unless ``listen`` says where, stopped at the end of
    the block.

    ``stop_timeout`` (default 0) is what ``stop()`` lets live connections finish by
    themselves: 0 ends them at once (each still gets a short grace to flush what it queued),
    so a test never waits ``shutdown_timeout`` for a client it forgot to close.

    An exception that escapes the handler or a callback (``client_input``,
    ``client_connected``...) is reported as the server always does (``client_error``), and the
    first one is raised again when the block ends, after the stop: the test fails with the
    handler's own traceback instead of a mere ``EOFError`` on its client. An exception raised
    in the block itself wins. ``reraise=False`` turns this off, for a test about errors.
    """
    if options.get("listen") is None:
        options.setdefault("host", "127.0.0.1")
        options.setdefault("port", 0)
    errors: list[Exception] = []
    if reraise:
        if handler is not None:
            handler = _watched(handler, errors)
        for name in _APPLICATION_CALLBACKS:
            if callable(options.get(name)):
                options[name] = _watched(options[name], errors)
    server = Server(handler, **options)
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=stop_timeout)
    if errors:
        first = errors[0]
        if len(errors) > 1 and hasattr(first, "add_note"):  # Python 3.11+
            first.add_note(f"(and {len(errors) - 1} more exception(s) in the handler or "
                           "callbacks; the server's log has each)")
        raise first


def _watched(function: Callable[..., Any], errors: list[Exception]) -> Callable[..., Any]:
    """``function``, recording in ``errors`` what it raises (then raising it on)."""

    @functools.wraps(function)
    def watched(*args: Any) -> Any:
        try:
            return function(*args)
        except Exception as exc:
            errors.append(exc)
            raise

    return watched


class TestConnection(Connection):
    """The Connection :func:`connect` returns: ``get()`` without a timeout waits at most
    ``read_timeout`` seconds (None: forever), then raises ``TimeoutError`` saying so."""

    __slots__ = ("read_timeout",)
    __test__ = False  # not a pytest test class, whatever its name
    read_timeout: float | None

    def get(self, timeout: float | None = None) -> Any:
        if timeout is not None or self.read_timeout is None:
            return Connection.get(self, timeout)
        try:
            return Connection.get(self, self.read_timeout)
        except TimeoutError:
            raise TimeoutError(
                f"no record from the server within {self.read_timeout:g} s: the reply the "
                "test waits for never came (greensrv.testing.connect's read_timeout; pass "
                "get(timeout=...) or read_timeout=None to wait longer)") from None


def connect(target: Server | Any, *, read_timeout: float | None = READ_TIMEOUT,
            **options: Any) -> TestConnection:
    """``greensrv.connect`` to a ``Server`` (its first address) or an address (a path is a
    unix socket's), with
    ``timeout`` defaulting to :data:`CONNECT_TIMEOUT`, and ``get()``'s default timeout to
    ``read_timeout`` (:data:`READ_TIMEOUT`; None waits forever). Use it as a context
    manager."""
    address = target.address if isinstance(target, Server) else target
    if isinstance(address, str) and (isinstance(target, Server) or address.startswith("/")):
        address = "unix:" + address  # a server's unix address is its path
    options.setdefault("timeout", CONNECT_TIMEOUT)
    conn = connect_as(TestConnection, address, **options)
    assert isinstance(conn, TestConnection)
    conn.read_timeout = read_timeout
    return conn


def _flags(f: Filter) -> tuple[bool, bool]:
    """(record_filter, chunked_records), looking through a Stack to its end layers."""
    layers = getattr(f, "filters", None)
    if callable(layers):
        inner = layers()
        return _flags(inner[0])[0], _flags(inner[-1])[1]
    return f.record_filter, f.chunked_records


def _fail(filt: Filter, how: str, got: Any, expected: Any) -> None:
    raise AssertionError(f"check_filter({filt!r}): {how}:\n  got      {got!r}\n"
                         f"  expected {expected!r}")



def check_filter(filt: Filter, records: Sequence[Any], trailing: bytes | None = None) -> bytes:
    """Check that ``filt`` decodes what it encodes, whatever the chunking; return the wire bytes.

    ``records`` are encoded with a clone of ``filt`` (``encode_many``, which must equal the
    ``encode`` of each record joined); then fresh clones decode those bytes:

    - whole, through ``feed``; and through ``receive`` + ``next_record``, one record at a time;
    - one byte at a time;
    - split in two at every offset, checking at each split that the records returned so far,
      re-encoded, followed by ``pending()``, are exactly the bytes received (so ``pending()``
      is exact: a handler switching filters there loses nothing);
    - with ``trailing`` bytes after the last record (by default the encoding of the first
      record minus its last byte): the same records, and ``pending() == trailing`` (skipped for
      the default when a Stack's upper layer holds those bytes, so they have no wire form).

    Every decoding must give ``records`` back (compared with ``==``) with nothing pending, and
    ``feed_eof()`` must then return no record. Filters whose records are the chunks as they
    arrive (``chunked_records``, e.g. ``Stream``) are compared by the concatenation of their
    records. Record filters (``Map``, ``Grep``) read whole records, not bytes: they are fed one
    encoded item per ``receive``, and are best checked inside a ``Stack`` over a byte filter.

    Raises ``AssertionError`` saying which decoding differed, with what it got. Keep
    ``records`` small (a few hundred bytes of wire): the split check is quadratic.
    """
    if not isinstance(filt, Filter):
        raise TypeError(f"check_filter: expected a Filter, not {type(filt).__name__}")
    records = list(records)
    record_filter, chunked = _flags(filt)
    encoder = filt.clone()
    if record_filter:
        return _check_record_filter(filt, encoder, records)
    wire = encoder.encode_many(records)
    one_by_one = b"".join(filt.clone().encode(r) for r in records)
    if wire != one_by_one:
        _fail(filt, "encode_many differs from encode of each record", wire, one_by_one)

    def same(got: list[Any], how: str) -> None:
        if chunked:
            if b"".join(got) != b"".join(records):
                _fail(filt, how, b"".join(got), b"".join(records))
        elif got != records:
            _fail(filt, how, got, records)

    def finish(f: Filter, how: str, pending: bytes = b"") -> None:
        if f.pending() != pending:
            _fail(filt, f"{how}: pending()", f.pending(), pending)
        if f.pending_size() != len(pending):
            _fail(filt, f"{how}: pending_size()", f.pending_size(), len(pending))

    f = filt.clone()
    same(f.feed(wire), "decoding the bytes whole")
    finish(f, "decoding the bytes whole")
    eof = f.feed_eof()
    if eof:
        _fail(filt, "feed_eof() after whole records", eof, [])

    f = filt.clone()
    f.receive(wire)
    same(pull_records(f), "receive() then next_record() one at a time")
    finish(f, "receive() then next_record()")

    f = filt.clone()
    got: list[Any] = []
    for i in range(len(wire)):
        got += f.feed(wire[i : i + 1])
    same(got, "decoding one byte at a time")
    finish(f, "decoding one byte at a time")

    for cut in range(len(wire) + 1):
        f = filt.clone()
        head = f.feed(wire[:cut])
        if not chunked:
            try:
                pending = f.pending()
            except FilterError:
                pending = None  # an upper Stack layer holds bytes with no wire form
            if pending is not None and encoder.encode_many(head) + pending != wire[:cut]:
                _fail(filt, f"after {cut} bytes, records re-encoded + pending()",
                      encoder.encode_many(head) + pending, wire[:cut])
        same(head + f.feed(wire[cut:]), f"split at byte {cut}")
        finish(f, f"split at byte {cut}")

    derived = trailing is None
    if derived and records and not chunked:
        trailing = filt.clone().encode(records[0])[:-1]
    if trailing:
        f = filt.clone()
        same(f.feed(wire + trailing), "decoding with trailing bytes")
        if derived:
            try:
                f.pending()
            except FilterError:
                # A Stack layer above the wire holds part of the trailing bytes (a record
                # filter that groups records): they have no wire form, which is correct.
                return wire
        finish(f, "decoding with trailing bytes", trailing)
        f = filt.clone()
        got = []
        for b in wire + trailing:
            got += f.feed(bytes((b,)))
        same(got, "one byte at a time with trailing bytes")
        finish(f, "one byte at a time with trailing bytes", trailing)
    return wire


def _check_record_filter(filt: Filter, encoder: Filter, records: list[Any]) -> bytes:
    items = encoder.encode_list(records)
    f = filt.clone()
    for item in items:
        f.receive_record(item)
    got = pull_records(f)
    if got != records:
        _fail(filt, "all items received, then decoded", got, records)
    f = filt.clone()
    got = []
    for item in items:
        f.receive_record(item)
        got += pull_records(f)
    if got != records:
        _fail(filt, "decoding item by item", got, records)
    if f.pending_size():
        _fail(filt, "pending_size() after all records", f.pending_size(), 0)
    try:
        return encoder.encode_many(records)
    except TypeError:
        return b""  # its items are not bytes: it only makes sense inside a Stack
