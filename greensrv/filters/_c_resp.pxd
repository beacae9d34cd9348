# The augmenting .pxd of greensrv.filters._c_resp (resp.py compiled): Resp's parse state in C
# fields and its parse steps as C calls with typed locals (the bulk paths themselves are in
# resp_scan.py, the reply pieces in resp_encode.py, each compiled with its own .pxd).
# Lengths and integers read from the wire stay Python ints (a 20-digit one does not fit in C).
cimport cython
from greensrv.filters.base cimport Filter

cdef object NEED_DATA
cdef frozenset _TYPE_BYTES
cdef dict _SIMPLE
cdef list _BULK_HEADS, _SMALL_INTS
cdef Py_ssize_t _FAST_MIN
cdef bint _SCAN_IN_C

cdef class Resp(Filter):
    cdef public list _bends, _btoks, _stack
    cdef public bytes _bregion
    cdef public Py_ssize_t _fast_from, _max_array, _max_bulk, _max_depth, _max_line
    cdef public Py_ssize_t _max_message, _need, _pos, _scan
    cdef public int _protocol  # 2 or 3 (resp3.check_protocol)
    cdef public bint _client  # every record put is a command

    cpdef next_record(self)
    cpdef feed(self, data)
    @cython.locals(start=Py_ssize_t, i=Py_ssize_t, toks=list, out=list, region=bytes)
    cdef list _bulk_parse(self)
    @cython.locals(start=Py_ssize_t, region=bytes, pos=Py_ssize_t, out=list)
    cdef list _bulk_scan(self)
    @cython.locals(n=Py_ssize_t, pos=Py_ssize_t, t=int, scan=Py_ssize_t, nl=Py_ssize_t,
                   end=Py_ssize_t, stack=list, top=list)
    cdef _parse_one(self)
    cdef _resp3(self, decode, Py_ssize_t kind, data)
    cdef _int(self, buf, Py_ssize_t begin, Py_ssize_t end)
    cdef _check_message(self, Py_ssize_t size_end)
    cdef _error(self, what)
    cpdef _compact(self)
    cpdef pending(self)
    cpdef pending_size(self)
    @cython.locals(n=Py_ssize_t)
    cpdef encode(self, record)
    cpdef encode_many(self, records)
    cpdef _forget_input(self)
    cpdef clone(self)
