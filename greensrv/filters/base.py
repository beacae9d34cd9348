"""The sans-IO filter protocol every greensrv filter follows.

A filter turns bytes into records (input) and records into bytes (output). It never touches a
socket: the :class:`~greensrv.Connection` owns the I/O and calls, per chunk read,
:meth:`Filter.receive`, then :meth:`Filter.next_record` once per record it wants. Pulling one
record at a time (POE's ``get_one``) means a handler may switch filters after any record and the
bytes behind that record are still unparsed, available from :meth:`Filter.pending`.

Contract for subclasses (see ``docs/filters.md``, "write your own filter"):

- override :meth:`next_record`, :meth:`encode` and :meth:`clone`;
- keep unparsed input in ``self._buf`` (a ``bytearray``) from offset ``self._start`` on, or
  override :meth:`receive` and :meth:`pending` together;
- raise :class:`~greensrv.FilterError` for malformed or oversized input, naming the filter, the
  limit and the size seen; never any other exception for bad bytes;
- :meth:`encode` raises ``TypeError`` for a record of the wrong type and ``ValueError`` (often
  :class:`~greensrv.FilterError`) for one the framing cannot carry.

Class attributes that tell :class:`~greensrv.filters.Stack` and
:func:`greensrv.testing.check_filter` how a filter behaves:

- ``record_filter``: its input is whole records of the layer below (``Map``, ``Grep``), not a
  byte stream, so only the grouping of records into ``receive`` calls can vary;
- ``chunked_records``: its records are the chunks as they arrived (``Stream``), so only their
  concatenation is independent of the chunking;
- ``passthrough``: its records concatenated are exactly its input bytes (``Stream``), so bytes an
  upper layer of a Stack still holds can be reported as wire bytes by ``pending()``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from .._accelerate import accelerate
from ..errors import FilterError

__all__ = ["NEED_DATA", "Filter", "FilterError"]


class _NeedData:
    """The type of :data:`NEED_DATA`; a singleton with a readable repr."""

    __slots__ = ()
    _instance: _NeedData | None = None

    def __new__(cls) -> _NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __reduce__(self) -> str:
        return "NEED_DATA"


#: Returned by :meth:`Filter.next_record` when no complete record is buffered yet.
NEED_DATA: Any = _NeedData()

#: Compact the receive buffer once this many consumed bytes sit in front of the unparsed ones;
#: below it, advancing an offset is cheaper than moving the remaining bytes.
COMPACT_THRESHOLD = 64 * 1024

_BYTES_TYPES = (bytes, bytearray, memoryview)


class Filter:
    """Base class: a receive buffer plus the pull protocol built on :meth:`next_record`."""

    # ``_ready``: records already parsed and not yet returned, last one first. A filter that
    # parses a whole chunk at once (Line, Resp) fills it and its next_record() looks in it
    # first; the Connection pops records from it directly (the per-record fast path). Other
    # filters leave it empty. (An instance field, not a class default: the compiled base class
    # has a fixed layout, greensrv/filters/base.pxd.)
    __slots__ = ("_buf", "_ready", "_start")

    # (Unannotated: Cython types annotated class attributes of a compiled class as C fields.)
    record_filter = False
    chunked_records = False
    passthrough = False

    def __init__(self) -> None:
        self._buf = bytearray()
        self._start = 0  # offset of the first unparsed byte in self._buf
        self._ready: list[Any] = []

    # -- input -------------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        """Buffer more input bytes; parsing waits for :meth:`next_record`."""
        if self._start >= COMPACT_THRESHOLD:
            self._compact()
        self._buf += data

    def receive_record(self, record: Any) -> None:
        """Take one record of the layer below in a :class:`Stack` as input.

        A byte filter treats it as more bytes; record filters (``Map``, ``Grep``) keep it whole.
        """
        if not isinstance(record, _BYTES_TYPES):
            raise TypeError(
                f"{type(self).__name__} reads bytes, but the layer below it yields "
                f"{type(record).__name__} records (use encoding=None on a Line below it)"
            )
        self.receive(bytes(record) if isinstance(record, memoryview) else record)  # type: ignore[arg-type]

    def next_record(self) -> Any:
        """Return the next complete record, or :data:`NEED_DATA` if none is buffered."""
        raise NotImplementedError

    def feed(self, data: bytes) -> list[Any]:
        """Buffer ``data`` and return every complete record now available (POE's ``get``)."""
        self.receive(data)
        return pull_records(self)

    def feed_eof(self) -> list[Any]:
        """The peer closed: return the records left; a truncated record raises FilterError."""
        out = self.feed(b"")
        size = self.pending_size()
        if size:
            raise FilterError(
                f"{type(self).__name__}: connection closed inside a record "
                f"({size} bytes of an incomplete record)"
            )
        return out

    def pending(self) -> bytes:
        """Bytes received but not yet part of a returned record (carried over by set_filter)."""
        return bytes(self._buf[self._start :])

    def pending_size(self) -> int:
        """``len(self.pending())``, without copying the bytes."""
        return len(self._buf) - self._start

    def take_ready(self) -> list[Any]:
        """The records already parsed and not yet returned, last one first.

        The caller takes records by popping from the end of this list; each one popped counts as
        returned, exactly as if :meth:`next_record` had returned it (the per-record fast path of
        a connection iterating a batch). The list stays the filter's: ``next_record`` may start
        a new one, so ask again after calling it. A filter whose records need more work after
        parsing (``JsonLines`` decodes each line) returns an empty list, so every record goes
        through ``next_record``.
        """
        return self._ready

    def take_pending(self) -> bytes:
        """Return :meth:`pending` and forget those bytes (what switching filters uses).

        Afterwards the filter holds no input, as :meth:`clone` would make it, so bytes handed
        over to another filter are never parsed here a second time if this filter is used again.
        The list :meth:`take_ready` returned is emptied in place.
        """
        ready = self.take_ready()
        data = self.pending()
        ready.clear()
        self._forget_input()
        return data

    def _forget_input(self) -> None:
        """Drop every input byte and parsed record, keep the settings (take_pending's last step).

        Afterwards the filter parses as a fresh :meth:`clone` would. This resets the buffer and
        the ready list, then every slot (and ``__dict__`` entry) that classes written in Python
        declare, to a fresh clone's value, so a Python subclass needs nothing more. The compiled
        classes (docs/compiled.md) keep their fields in C, out of reach of ``setattr`` by slot
        name: ``Line`` and ``Resp`` override this to reset their own parse state and then call
        ``Filter._forget_input(self)``; a compiled filter with parse state of its own must too.
        """
        self._buf = bytearray()
        self._start = 0
        self._ready = []
        _reset_python_slots(self)

    def _compact(self) -> None:
        """Drop consumed bytes from the front of the buffer."""
        del self._buf[: self._start]
        self._start = 0

    # -- output ------------------------------------------------------------------------------
    def encode(self, record: Any) -> bytes:
        """Return the wire form of one record."""
        raise NotImplementedError

    def encode_many(self, records: Iterable[Any]) -> bytes:
        """Return the wire form of several records; filters may override it for speed."""
        encode = self.encode
        return b"".join([encode(r) for r in records])

    def encode_list(self, records: Iterable[Any]) -> list[Any]:
        """Return the wire items of ``records`` for the layer below in a :class:`Stack`.

        One item per record for a byte filter (its ``encode``); a record filter may return
        other items, or fewer (``Grep`` drops records this way).
        """
        encode = self.encode
        return [encode(r) for r in records]

    def ascii_terminator(self) -> str | None:
        """The terminator if an ASCII ``str`` record's wire form is the record plus it, else None.

        The Connection then queues such records as they are and encodes a whole burst with one
        ``join`` when it sends, instead of calling :meth:`encode` per record. Only a filter
        whose ``encode`` really is "ASCII text + this ASCII terminator" may say so.
        """
        return None

    def use_on_client(self) -> None:
        """Called by ``greensrv.connect`` and ``Client`` on their filters before first use: a
        filter whose output differs on the client's side (``Resp``: every record is a command)
        switches to it. The default changes nothing; ``clone()`` keeps the choice."""

    # -- lifecycle ---------------------------------------------------------------------------
    def clone(self) -> Filter:
        """Return a fresh filter with the same settings and empty buffers."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} pending={self.pending_size()}>"


def _reset_python_slots(f: Filter) -> None:
    """Set each slot and ``__dict__`` entry of ``f`` from classes written in Python to a clone's."""
    names = []
    for cls in type(f).__mro__:
        if cls.__module__.rpartition(".")[2].startswith("_c_"):
            continue  # a compiled class: C fields, which its own _forget_input resets
        slots = cls.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name in ("__dict__", "__weakref__", "_buf", "_ready", "_start"):
                continue
            if name.startswith("__"):
                name = f"_{cls.__name__.lstrip('_')}{name}"  # a mangled private slot
            names.append(name)
    has_dict = hasattr(f, "__dict__")
    if not names and not has_dict:
        return  # nothing declared in Python: no clone needed
    fresh = f.clone()
    for name in names:
        try:
            setattr(f, name, getattr(fresh, name))
        except AttributeError:
            pass  # a slot the fresh filter leaves unset stays as it is
    if has_dict and hasattr(fresh, "__dict__"):
        vars(f).update(vars(fresh))


#: Largest size limit accepted: the compiled filters keep limits in C ``Py_ssize_t`` fields, so
#: a larger value is refused here, at construction, rather than overflowing later.
MAX_LIMIT = sys.maxsize


def check_limit(name: str, value: Any, minimum: int = 1) -> int:
    """Validate a size-limit constructor argument; raise ValueError naming it."""
    if (not isinstance(value, int) or isinstance(value, bool)
            or not minimum <= value <= MAX_LIMIT):
        raise ValueError(f"{name} must be an int from {minimum} to {MAX_LIMIT}, not {value!r}")
    return int(value)


def pull_records(f: Filter) -> list[Any]:
    """Every record ``f`` has complete now, through ``next_record`` one at a time."""
    out: list[Any] = []
    next_record = f.next_record
    while True:
        record = next_record()
        if record is NEED_DATA:
            return out
        out.append(record)


accelerate(globals(), "greensrv.filters._c_base")
