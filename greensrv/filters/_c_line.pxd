# The augmenting .pxd of greensrv.filters._c_line (line.py compiled): Line's fields in C, its
# per-record methods as C calls. Public overridable methods stay cpdef (base.pxd); the helpers
# a subclass has no business overriding are cdef.
cimport cython
from greensrv.filters.base cimport Filter
from greensrv.filters._c_splitters cimport Splitter as CSplitter

cdef object NEED_DATA

cdef class Line(Filter):
    cdef public bint _ascii_text, _utf8, _whole
    cdef public Py_ssize_t _bn, _max, _scan
    cdef public CSplitter _splitter
    cdef public object _batch_split, _braw, _encoding, _out_str
    cdef public str _errors
    cdef public bytes _out_lit, _sep
    cdef public dict _settings

    cpdef receive(self, data)
    cpdef next_record(self)
    cpdef feed(self, data)
    @cython.locals(start=Py_ssize_t, scan=Py_ssize_t, first=Py_ssize_t, last=Py_ssize_t,
                   end=Py_ssize_t, seplen=Py_ssize_t, after=Py_ssize_t, splitter=CSplitter)
    cdef list _chunk(self)
    @cython.locals(limit=Py_ssize_t, short=bint)
    cdef list _split(self, raw)
    cdef list _slow_batch(self, Py_ssize_t end)
    @cython.locals(start=Py_ssize_t, end=Py_ssize_t)
    cdef _one(self, Py_ssize_t i, Py_ssize_t after)
    cdef _decode(self, raw)
    @cython.locals(n=Py_ssize_t, start=Py_ssize_t, seen=Py_ssize_t, over=Py_ssize_t,
                   k=Py_ssize_t, splitter=CSplitter)
    cdef _check_tail(self)
    cdef _too_long(self, Py_ssize_t seen)
    cpdef _compact(self)
    cpdef pending(self)
    cpdef pending_size(self)
    cpdef feed_eof(self)
    cpdef encode(self, record)
    cpdef ascii_terminator(self)
    cpdef encode_many(self, records)
    cpdef _forget_input(self)
    cpdef clone(self)
