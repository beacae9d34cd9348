# The C layout of Filter, for Cython (pure-Python mode: base.py is the source, this only adds
# types). Compiled as greensrv.filters._c_base (its _c_base.pxd includes this file); compiled
# filters cimport Filter from here. Every method a subclass may override is cpdef, so an
# override written in Python is honoured by the compiled callers (feed calls next_record ...).
# Fields are public: subclasses in Python and the Connection read and assign them.

cdef class Filter:
    cdef public bytearray _buf
    cdef public list _ready
    cdef public Py_ssize_t _start

    cpdef receive(self, data)
    cpdef receive_record(self, record)
    cpdef next_record(self)
    cpdef feed(self, data)
    cpdef feed_eof(self)
    cpdef pending(self)
    cpdef pending_size(self)
    cpdef take_ready(self)
    cpdef take_pending(self)
    cpdef _forget_input(self)
    cpdef _compact(self)
    cpdef encode(self, record)
    cpdef encode_many(self, records)
    cpdef encode_list(self, records)
    cpdef ascii_terminator(self)
    cpdef clone(self)

cpdef list pull_records(Filter f)
