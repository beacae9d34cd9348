# cython: language_level=3, boundscheck=False, wraparound=False
"""The default Line mode's batch splitter in C: what Python's string methods cannot do in one pass.

``Line`` (default mode: ``\\n`` ends a line, a ``\\r`` before it belongs to the terminator)
splits a buffered batch of whole lines with ``bytes.decode`` then ``str.split`` (twice when
some lines end in ``\\r\\n``), then checks their lengths. Here the batch is checked to be
ASCII eight bytes at a time, then one pass finds each ``\\n`` with ``memchr``, drops the ``\\r``
before it, checks the length and builds the ``str`` (or ``bytes``) directly. Anything it does
not handle (a byte above 0x7f when text is asked for, a line over the limit) returns None, and
Line takes its pure-Python path, which is also the fallback when this module is not compiled
(``greensrv/filters/line.py``, ``NewlineSplitter`` in ``splitters.py``).
"""

from cpython.bytearray cimport PyByteArray_AS_STRING
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint64_t
from libc.string cimport memchr, memcpy


cdef extern from "Python.h":
    object PyUnicode_New(Py_ssize_t size, Py_UCS4 maxchar)
    void *PyUnicode_DATA(object unicode)


cdef inline bint _is_ascii(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    """No byte of ``p[:n]`` above 0x7f: eight bytes per step (a 4 KiB batch in 512 steps)."""
    cdef uint64_t word, bits = 0
    cdef unsigned char tail = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&word, p + i, 8)  # (an unaligned load, without undefined behaviour)
        bits |= word
        i += 8
    while i < n:
        tail |= p[i]
        i += 1
    return (bits & 0x8080808080808080ULL) == 0 and tail < 0x80


def split_newline_batch(buf, Py_ssize_t start, Py_ssize_t end,
                        Py_ssize_t max_length, bint as_text):
    """The lines of ``buf[start:end]`` (which ends with ``\\n``), without ``\\n`` or ``\\r\\n``.

    ``buf`` is the filter's ``bytearray`` or, on the whole-line path, the ``bytes`` received.
    ``str`` lines when ``as_text`` (ASCII only), else ``bytes``; None when a line is longer
    than ``max_length`` or, as text, not ASCII.
    """
    cdef const unsigned char *data
    if type(buf) is bytes:
        data = <const unsigned char *>PyBytes_AS_STRING(buf)
    elif type(buf) is bytearray:
        data = <const unsigned char *>PyByteArray_AS_STRING(buf)
    else:
        raise TypeError(f"split_newline_batch: bytes or bytearray, not {type(buf).__name__}")
    if start < 0 or end > len(buf) or start > end:
        raise ValueError("split_newline_batch: bad range")
    cdef const unsigned char *p = data + start
    cdef const unsigned char *stop = data + end
    cdef const unsigned char *nl
    cdef Py_ssize_t n
    cdef list out = []
    cdef object line
    if as_text and not _is_ascii(p, stop - p):  # the whole batch at once, not line by line
        return None
    while p < stop:
        nl = <const unsigned char *>memchr(p, 10, stop - p)
        if nl == NULL:
            return None  # an unterminated tail: not a batch of whole lines
        n = nl - p
        if n and (nl - 1)[0] == 13:
            n -= 1
        if n > max_length:
            return None
        if as_text:
            line = PyUnicode_New(n, 127)
            memcpy(PyUnicode_DATA(line), p, n)
        else:
            line = PyBytes_FromStringAndSize(<const char *>p, n)
        out.append(line)
        p = nl + 1
    return out
