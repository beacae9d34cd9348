"""The RESP3 side of :class:`~greensrv.filters.Resp`: its Python types, and the types both
versions encode differently (``None``, ``bool``, ``float``, ``dict``, ``set``, pushes...).

Kept apart from ``resp.py`` so the RESP2 hot path stays short; pure, like every filter.
"""

from __future__ import annotations

from typing import Any

from .base import check_limit

__all__ = ["Attributed", "Push", "RespError", "Verbatim", "check_protocol"]

#: The 64-bit range of a RESP integer; outside it an ``int`` is a RESP3 big number.
INT_MIN = -(1 << 63)
INT_MAX = (1 << 63) - 1

# Aggregate kinds on the parser's stack (0 is a plain array, the common case).
MAP = 37  # "%"
SET = 126  # "~"
PUSH = 62  # ">"
ATTRIBUTE = 124  # "|": the attribute map itself
ATTRIBUTED = 1  # the value an attribute map describes


class RespError:
    """A RESP error reply (``-ERR message``, or RESP3's ``!`` blob error): compare, print or
    raise it yourself."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RespError) and other.message == self.message

    def __hash__(self) -> int:
        return hash((RespError, self.message))

    def __repr__(self) -> str:
        return f"RespError({self.message!r})"

    def __str__(self) -> str:
        return self.message


class Push(list[Any]):
    """A RESP3 push (``>``): out-of-band data such as a pub/sub message. A list that says it is
    a push, so a client tells it from the reply to its last command with ``isinstance``."""

    def __repr__(self) -> str:
        return f"Push({list.__repr__(self)})"


class Verbatim(str):
    """A RESP3 verbatim string (``=``): text with a three-letter format ``fmt`` (``txt``,
    ``mkd``). Named ``fmt``, not ``format``, so ``str.format`` still works on it."""

    fmt: str

    def __new__(cls, text: str, fmt: str = "txt") -> Verbatim:
        data = fmt.encode("ascii", "replace")
        if len(data) != 3 or b":" in data:
            raise ValueError(f"Verbatim: fmt must be three characters, not {fmt!r}")
        self = super().__new__(cls, text)
        self.fmt = fmt
        return self

    def __repr__(self) -> str:
        return f"Verbatim({str.__repr__(self)}, fmt={self.fmt!r})"


class Attributed:
    """A value with RESP3 attributes (``|``): metadata about a reply that does not count as an
    element of the aggregate holding it. ``value`` is the reply, ``attributes`` a ``dict``."""

    __slots__ = ("attributes", "value")

    def __init__(self, value: Any, attributes: dict[Any, Any]) -> None:
        self.value = value
        self.attributes = attributes

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Attributed) and other.value == self.value
                and other.attributes == self.attributes)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dict it holds

    def __repr__(self) -> str:
        return f"Attributed({self.value!r}, {self.attributes!r})"


def check_protocol(protocol: object) -> int:
    """2 or 3, else a ValueError naming the option."""
    if type(protocol) is not int or protocol not in (2, 3):
        raise ValueError(f"Resp: protocol must be 2 or 3, not {protocol!r}")
    return protocol


def check_limits(max_bulk: int, max_array: int, max_depth: int, max_line: int,
                 max_message: int) -> tuple[int, int, int, int, int]:
    """Resp's limits, each checked with an error naming it."""
    return (check_limit("Resp: max_bulk_length", max_bulk, 0),
            check_limit("Resp: max_array_length", max_array, 0),
            check_limit("Resp: max_depth", max_depth),
            check_limit("Resp: max_line_length", max_line, 3),
            check_limit("Resp: max_message_length", max_message, 3))


# -- decoding ------------------------------------------------------------------------------------
def _hashable(value: Any) -> Any:
    """A set member or map key as something hashable: arrays as tuples, sets as frozensets."""
    try:
        hash(value)
        return value
    except TypeError:
        pass
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, set):
        return frozenset(value)
    raise ValueError(f"a {type(value).__name__} cannot be a map key or set member")


def close_aggregate(kind: int, items: list[Any]) -> Any:
    """The Python value of a complete RESP3 aggregate (not a plain array)."""
    if kind in (MAP, ATTRIBUTE):
        return {_hashable(k): v for k, v in zip(items[0::2], items[1::2], strict=True)}
    if kind == SET:
        return {_hashable(v) for v in items}
    if kind == PUSH:
        return Push(items)
    return Attributed(items[1], items[0])  # ATTRIBUTED: [attributes, value]


def empty_aggregate(kind: int) -> Any:
    return {} if kind == MAP else set() if kind == SET else Push()


def blob_value(kind: int, payload: bytes) -> Any:
    """A verbatim string (``=``) or a blob error (``!``) from its payload."""
    if kind == 33:
        return RespError(payload.decode("utf-8", "surrogateescape"))
    if len(payload) < 4 or payload[3] != 58:
        raise ValueError(f"verbatim string without a 'fmt:' prefix: {payload[:8]!r}")
    return Verbatim(payload[4:].decode("utf-8", "surrogateescape"),
                    payload[:3].decode("ascii", "replace"))


def scalar_value(kind: int, text: bytes) -> Any:
    """A RESP3 one-line value: ``_`` null, ``#`` boolean, ``,`` double, ``(`` big number."""
    if kind == 95:  # _
        if text:
            raise ValueError(f"null with a payload {text[:8]!r}")
        return None
    if kind == 35:  # #
        if text == b"t":
            return True
        if text == b"f":
            return False
        raise ValueError(f"bad boolean {text[:8]!r}")
    if kind == 44:  # ,
        if text and b"_" not in text and text.strip() == text:
            try:
                return float(text)
            except ValueError:
                pass
        raise ValueError(f"bad double {text[:24]!r}")
    digits = text[1:] if text[:1] == b"-" else text
    if digits.isdigit():
        try:
            return int(text)
        except ValueError:  # past sys.get_int_max_str_digits()
            raise ValueError(f"big number of {len(text)} digits is too long") from None
    raise ValueError(f"bad big number {text[:24]!r}")


# -- encoding ------------------------------------------------------------------------------------
def _double(value: float) -> bytes:
    if value != value:
        return b"nan"
    return repr(float(value)).encode()


def encode_other(record: Any, protocol: int, encode: Any) -> bytes | None:
    """The wire form of the types whose encoding depends on the protocol, or None if
    ``record`` is none of them. ``encode`` encodes nested values."""
    three = protocol == 3
    if record is None:
        return b"_\r\n" if three else b"$-1\r\n"
    if record is True or record is False:
        if three:
            return b"#t\r\n" if record else b"#f\r\n"
        return b":1\r\n" if record else b":0\r\n"
    if isinstance(record, RespError):
        data = record.message.encode("utf-8", "surrogateescape")
        if 13 in data or 10 in data:  # CR, LF (ints: memchr)
            if three:
                return b"!%d\r\n%b\r\n" % (len(data), data)
            data = data.replace(b"\r", b" ").replace(b"\n", b" ")
        return b"-%b\r\n" % data
    if isinstance(record, float):
        if three:
            return b",%b\r\n" % _double(record)
        data = _double(record)
        return b"$%d\r\n%b\r\n" % (len(data), data)
    if isinstance(record, int):  # outside 64 bits (or an int subclass)
        if INT_MIN <= record <= INT_MAX:
            return b":%d\r\n" % record
        if three:
            return b"(%d\r\n" % record
        data = b"%d" % record
        return b"$%d\r\n%b\r\n" % (len(data), data)
    if isinstance(record, Verbatim):
        data = record.encode("utf-8", "surrogateescape")
        if three:
            data = record.fmt.encode("ascii", "replace") + b":" + data
            return b"=%d\r\n%b\r\n" % (len(data), data)
        return b"$%d\r\n%b\r\n" % (len(data), data)
    if isinstance(record, dict):
        head = b"%%%d\r\n" % len(record) if three else b"*%d\r\n" % (2 * len(record))
        return head + b"".join([encode(k) + encode(v) for k, v in record.items()])
    if isinstance(record, (set, frozenset)):
        head = b"~%d\r\n" % len(record) if three else b"*%d\r\n" % len(record)
        return head + b"".join([encode(v) for v in record])
    if isinstance(record, Push):
        head = b">%d\r\n" % len(record) if three else b"*%d\r\n" % len(record)
        return head + b"".join([encode(v) for v in record])
    if isinstance(record, Attributed):
        if not three:
            return encode(record.value)  # RESP2 has no attributes: the value alone
        attrs = record.attributes
        return (b"|%d\r\n" % len(attrs) + b"".join([encode(k) + encode(v)
                                                  for k, v in attrs.items()])
                + encode(record.value))
    return None
