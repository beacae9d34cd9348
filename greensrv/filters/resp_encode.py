"""The wire forms :class:`~greensrv.filters.Resp` writes most, ready-made or built in one step.

A Redis-like server answers mostly ``+OK``, short bulk strings, small integers, nulls and
errors; a client sends commands, arrays of bulk strings. ``Resp.encode`` takes the replies
from here: whole wire forms of the commonest simple strings and small integers looked up, a
bulk string's header looked up by its length, the rest (any simple string, an error, a
command) built without ``%`` formatting, which costs more than the copying itself. (CR and LF
are looked for as ints, ``13 in data``: memchr, where a bytes needle, ``b"\r" in data``, costs
several times more on CPython 3.11.) Compiled
(``_c_resp_encode.pxd``), each function is a C call.

On a client (``greensrv.connect`` and ``Client`` call ``Resp.use_on_client``, or
``Resp(client=True)``), every record put is a command, sent as Redis wants a request: an array
of bulk strings. A list or tuple holds the command's words, each ``bytes`` (or
``bytearray``/``memoryview``), ``str`` (UTF-8) or a number (``int``, ``float``: its decimal text,
as redis-py sends it); a lone ``str`` or ``bytes`` is a one-word command (``"PING"``). Anything
else (a nested list, a ``dict``, ``None``, a ``bool``) is a ``TypeError`` naming it.
"""

from __future__ import annotations

from typing import Any

from .._accelerate import accelerate
from .resp3 import RespError

__all__ = ["BULK_HEADS", "SIMPLE", "SMALL_INTS", "base_type", "bulk", "encode_command",
           "error", "simple_string"]

CRLF = b"\r\n"
#: ``b"$<n>\r\n"`` for every bulk length below ``len(BULK_HEADS)``.
BULK_HEADS = [b"$%d\r\n" % n for n in range(1024)]
#: ``b":<n>\r\n"`` for the integers from 0 below ``len(SMALL_INTS)`` (counts, INCR, flags).
SMALL_INTS = [b":%d\r\n" % n for n in range(1024)]
#: The simple strings servers send most, whole.
SIMPLE = {text: b"+%b\r\n" % text.encode() for text in ("OK", "PONG", "QUEUED")}


def bulk(data: bytes) -> bytes:
    """``data`` as a bulk string."""
    n = len(data)
    head = BULK_HEADS[n] if n < 1024 else b"$%d\r\n" % n
    return b"".join((head, data, CRLF))


def simple_string(text: str) -> bytes:
    """A ``str`` record: a simple string, or a bulk string when it holds CR or LF."""
    # (ASCII text needs no error handler: the plain encode is the cheapest)
    data = text.encode() if text.isascii() else text.encode("utf-8", "surrogateescape")
    if 13 in data or 10 in data:  # CR, LF
        return bulk(data)
    return b"".join((b"+", data, CRLF))


def error(record: RespError, protocol: int) -> bytes:
    """A :class:`RespError` (RESP2: CR and LF become spaces; RESP3: a blob error)."""
    message: str = record.message  # (typed: a C call to the codec when compiled)
    data = message.encode("utf-8", "surrogateescape")
    if 13 in data or 10 in data:  # CR, LF
        if protocol == 3:
            return b"".join((b"!%d\r\n" % len(data), data, CRLF))
        data = data.replace(b"\r", b" ").replace(b"\n", b" ")
    return b"".join((b"-", data, CRLF))


def encode_command(record: Any) -> bytes:
    """A client's record as a request: an array of bulk strings (see the module docstring)."""
    if isinstance(record, (list, tuple)):
        words = record
    elif isinstance(record, (str, bytes)):
        words = (record,)
    else:
        raise TypeError(f"Resp on a client sends commands: a list or tuple of words, or one "
                        f"str or bytes, not {type(record).__name__}")
    parts = [b"*%d\r\n" % len(words)]
    for word in words:
        t = type(word)
        if t is bytes:
            data = word
        elif t is str:
            data = word.encode("utf-8", "surrogateescape")
        elif isinstance(word, (bytes, bytearray, memoryview)):
            data = bytes(word)
        elif isinstance(word, str):
            data = str(word).encode("utf-8", "surrogateescape")
        elif isinstance(word, (int, float)) and not isinstance(word, bool):
            data = repr(float(word) if isinstance(word, float) else int(word)).encode()
        else:
            raise TypeError(f"a Redis command's words are bytes, str, int or float, not "
                            f"{type(word).__name__} ({word!r})")
        n = len(data)
        parts.append(BULK_HEADS[n] if n < 1024 else b"$%d\r\n" % n)
        parts.append(data)
        parts.append(CRLF)
    return b"".join(parts)


def base_type(record: Any) -> Any:
    """A subclass instance as its base type (``encode`` dispatches on exact types)."""
    base: Any = next(t for t in (str, list, tuple) if isinstance(record, t))
    return base(record)


accelerate(globals(), "greensrv.filters._c_resp_encode")
