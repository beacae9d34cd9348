"""Resp's bulk paths: every complete message in the buffer at once, before the exact parser.

- :func:`scan_requests` takes what real clients send (``redis-cli``, ``redis-benchmark``,
  redis-py), arrays of bulk strings (``*3 $3 SET $1 k $1 v``), byte by byte in one pass,
  slicing each payload once and allocating nothing else. Compiled (``_c_resp_scan.pxd``), a byte
  is a C char and a payload is copied straight from the region's memory; in pure Python this
  loop is slower than a split, so only the compiled build uses it (:data:`COMPILED`; the tests
  run it in both builds).
- :func:`split_messages` takes the common shapes of both directions from one ``split`` at CRLF.

Both stop at anything else (an inline command, a nested array, a limit reached, an incomplete
message), which ``Resp``'s exact parser then takes and reports.
"""

from __future__ import annotations

from typing import Any

from .._accelerate import accelerate
from .resp3 import RespError

__all__ = ["COMPILED", "MAX_INT_CHARS", "scan_requests", "split_messages"]

#: Whether this module runs compiled (its name is then ``_c_resp_scan``).
COMPILED = __name__.rpartition(".")[2].startswith("_c_")

#: Digits allowed in a length or integer: a signed 64-bit integer has at most 19 and a sign.
MAX_INT_CHARS = 20

#: Length headers split_messages recognises by a dict lookup (longer ones take the exact
#: path); arrays of up to this many bulk strings are checked in bulk.
_FAST_BULK = {b"$%d" % i: i for i in range(4096)}
_FAST_ARRAY = {b"*%d" % i: i for i in range(1, 256)}


def scan_requests(region: bytes, max_bulk: int, max_array: int) -> tuple[list[Any], list[int], int]:
    """The complete requests at the start of ``region``: ``(records, ends, consumed)``.

    ``records`` are arrays of bulk strings (``list`` of ``bytes``) or bare bulk strings
    (``bytes``); ``ends[i]`` is the offset just after record ``i``; ``consumed`` the offset
    after the last one (0 when the region does not begin with one).
    """
    data = region  # (compiled: the region's memory, a const unsigned char pointer)
    n = len(region)
    out: list[Any] = []
    ends: list[int] = []
    pos = 0
    while pos < n:
        head = data[pos]
        if head == 42:  # * an array: of bulk strings only, else stop
            count, after = _length(data, pos + 1, n)
            if count <= 0 or count > max_array:
                break
            items = []
            for _ in range(count):
                begin, end = _bulk(data, after, n, max_bulk)
                if begin < 0:
                    break
                items.append(data[begin:end])
                after = end + 2
            if len(items) != count:
                break
            out.append(items)
        elif head == 36:  # $ a bulk string
            begin, end = _bulk(data, pos, n, max_bulk)
            if begin < 0:
                break
            out.append(data[begin:end])
            after = end + 2
        else:
            break
        pos = after
        ends.append(pos)
    return out, ends, pos


def split_messages(toks: list[bytes], max_bulk: int, max_line: int,
                   max_array: int) -> tuple[list[Any], list[int], int]:
    """The complete messages at the start of ``toks`` (a region split at CRLF, the last token
    unterminated): ``(records, ends, used)``, ``ends[i]`` the token index after record ``i``.

    Handles the common shapes (bulk strings, arrays of bulk strings, simple strings,
    integers, errors, nulls); stops at anything else (nested arrays, inline commands, a bulk
    string holding CRLF, an incomplete message, a limit reached).
    """
    ntok = len(toks) - 1  # the last token is not CRLF-terminated: not complete
    bulk_get = _FAST_BULK.get
    array_get = _FAST_ARRAY.get
    out: list[Any] = []
    ends: list[int] = []
    i = 0
    while i < ntok:
        tok = toks[i]
        length = bulk_get(tok)
        if length is not None:
            i += 1
            if i >= ntok or len(toks[i]) != length or length > max_bulk:
                i -= 1
                break
            out.append(toks[i])
        else:
            count = array_get(tok)
            if count is not None:
                end = i + 2 * count
                if end >= ntok or count > max_array:
                    break
                payloads = toks[i + 2 : end + 1 : 2]
                # Each header must be "$<length of its payload>" (one pass: C-speed when
                # compiled, and as fast as map() and a list compare in pure Python).
                j = i + 1
                for payload in payloads:
                    length = bulk_get(toks[j])
                    if length is None or length != len(payload) or length > max_bulk:
                        break
                    j += 2
                if j <= end:
                    break
                out.append(payloads)
                i = end
            else:
                head = tok[:1]
                if len(tok) > max_line or 13 in tok or 10 in tok:  # CR, LF (ints: memchr)
                    break
                if head == b"+":
                    out.append(tok[1:].decode("utf-8", "surrogateescape"))
                elif head == b":" and 1 < len(tok) <= MAX_INT_CHARS + 1 and (
                        tok[1:].isdigit() or (tok[1:2] == b"-" and tok[2:].isdigit())):
                    out.append(int(tok[1:]))
                elif head == b"-":
                    out.append(RespError(tok[1:].decode("utf-8", "surrogateescape")))
                elif tok == b"$-1" or tok == b"*-1":
                    out.append(None)
                elif tok == b"*0":
                    out.append([])
                else:
                    break
        i += 1
        ends.append(i)
    return out, ends, i


def _bulk(data: Any, pos: int, n: int, max_bulk: int) -> tuple[int, int]:
    """The payload span of the complete bulk string at ``pos``, or (-1, -1)."""
    if pos >= n or data[pos] != 36:
        return (-1, -1)
    length, begin = _length(data, pos + 1, n)
    end = begin + length
    if length < 0 or length > max_bulk or end + 2 > n:
        return (-1, -1)
    if data[end] != 13 or data[end + 1] != 10:
        return (-1, -1)
    return (begin, end)


def _length(data: Any, pos: int, n: int) -> tuple[int, int]:
    """The decimal at ``pos`` up to its CRLF and the offset after it; (-1, pos) if none.

    At most 18 digits (always fits in C); anything longer or odd is left to the exact
    parser, which reports it.
    """
    value = 0
    digits = 0
    while pos < n and 48 <= data[pos] <= 57 and digits < 18:
        value = value * 10 + (data[pos] - 48)
        digits += 1
        pos += 1
    if digits == 0 or pos + 1 >= n or data[pos] != 13 or data[pos + 1] != 10:
        return (-1, pos)
    return (value, pos + 2)


accelerate(globals(), "greensrv.filters._c_resp_scan")
