"""Stack: filters in layers (POE::Filter::Stackable), the first one nearest the wire.

On input, each layer's records are the next layer's input: bytes for a byte filter (``Line``
over ``Stream``), whole records for a record filter (``Map``, ``Grep``). On output, records go
down through each layer's :meth:`~greensrv.filters.Filter.encode_list` and the bottom layer
makes the bytes. A byte-level ``Map`` at the bottom is a mod_perl connection filter: it sees
(and may rewrite) the raw bytes of the connection in each direction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..errors import FilterError
from .base import NEED_DATA, Filter, pull_records

__all__ = ["Stack"]


def _check(filters: tuple[Any, ...]) -> list[Filter]:
    for f in filters:
        if not isinstance(f, Filter):
            raise TypeError(f"Stack: layers must be Filter instances, not {type(f).__name__}")
    return list(filters)


class Stack(Filter):
    """Records of the last (top) filter; the first filter reads the wire.

    ``push``/``pop`` work at the top, ``unshift``/``shift`` at the bottom (the wire side),
    ``filters()`` lists the layers bottom first. A removed layer keeps whatever it had
    buffered; a Stack always keeps at least one layer. :meth:`pending` is the unparsed wire
    bytes, oldest first; it raises :class:`~greensrv.FilterError` when a layer above a
    non-pass-through layer holds data (those bytes have no wire form any more).
    """

    __slots__ = ("_layers",)

    def __init__(self, *filters: Filter) -> None:
        super().__init__()
        if not filters:
            raise ValueError("Stack: needs at least one filter")
        self._layers = _check(filters)

    # -- the stack ---------------------------------------------------------------------------
    def filters(self) -> list[Filter]:
        """The layers, bottom (wire side) first."""
        return list(self._layers)

    def push(self, *filters: Filter) -> None:
        """Add filters on top, in order (the last one becomes the top)."""
        self._layers.extend(_check(filters))

    def pop(self) -> Filter:
        """Remove and return the top filter."""
        self._need_two("pop")
        return self._layers.pop()

    def unshift(self, *filters: Filter) -> None:
        """Add filters at the bottom, in order (the first one becomes the bottom)."""
        self._layers[0:0] = _check(filters)

    def shift(self) -> Filter:
        """Remove and return the bottom filter."""
        self._need_two("shift")
        return self._layers.pop(0)

    def _need_two(self, op: str) -> None:
        if len(self._layers) < 2:
            raise IndexError(f"Stack.{op}: a Stack keeps at least one filter")

    # -- input -------------------------------------------------------------------------------
    def receive(self, data: bytes) -> None:
        self._layers[0].receive(data)

    def receive_record(self, record: Any) -> None:
        self._layers[0].receive_record(record)

    def next_record(self) -> Any:
        layers = self._layers
        top = len(layers) - 1
        i = top
        while True:
            record = layers[i].next_record()
            if record is NEED_DATA:
                if i == 0:
                    return NEED_DATA
                i -= 1  # this layer needs input: pull one record from the layer below
            elif i == top:
                return record
            else:
                i += 1
                layers[i].receive_record(record)

    def feed_eof(self) -> list[Any]:
        out = self.feed(b"")
        carry: list[Any] = []
        for layer in self._layers:
            records: list[Any] = []
            for item in carry:
                layer.receive_record(item)
                records.extend(pull_records(layer))
            records.extend(layer.feed_eof())
            carry = records
        return out + carry

    def pending(self) -> bytes:
        layers = self._layers
        parts = []
        for i in range(len(layers) - 1, -1, -1):  # the top holds the oldest bytes
            layer = layers[i]
            if not layer.pending_size():
                continue
            for below in layers[:i]:
                if not below.passthrough:
                    raise FilterError(
                        f"Stack: layer {i} ({type(layer).__name__}) holds "
                        f"{layer.pending_size()} bytes that no longer have a wire form "
                        f"(the {type(below).__name__} below it transformed them)")
            parts.append(layer.pending())
        return b"".join(parts)

    def pending_size(self) -> int:
        return sum(layer.pending_size() for layer in self._layers)

    def take_pending(self) -> bytes:
        data = self.pending()
        for layer in self._layers:  # the layers stay the same objects, emptied
            layer.take_pending()
        return data

    # -- output ------------------------------------------------------------------------------
    def encode(self, record: Any) -> bytes:
        return self.encode_many((record,))

    def encode_many(self, records: Iterable[Any]) -> bytes:
        layers = self._layers
        items = records
        for i in range(len(layers) - 1, 0, -1):
            items = layers[i].encode_list(items)
        return layers[0].encode_many(items)

    def encode_list(self, records: Iterable[Any]) -> list[Any]:
        items = records
        for layer in reversed(self._layers):
            items = layer.encode_list(items)
        return list(items)

    def use_on_client(self) -> None:
        for layer in self._layers:
            layer.use_on_client()

    def clone(self) -> Stack:
        return Stack(*[layer.clone() for layer in self._layers])

    def __repr__(self) -> str:
        return f"Stack({', '.join(repr(layer) for layer in self._layers)})"

