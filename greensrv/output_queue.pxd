# The C layout of OutputQueue, for Cython (pure-Python mode: output_queue.py is the source, this
# only adds types). Compiled as greensrv._c_output_queue (its _c_output_queue.pxd includes this
# file); connection_fields cimports OutputQueue from here. The watermarks are clamped to
# sys.maxsize at construction (output_queue.py), so no option value overflows a C integer.
from greensrv.filters.base cimport Filter

cdef class OutputQueue:
    cdef public Filter _out
    cdef public bytearray _outbuf
    cdef public list _lazy
    cdef public str _lit
    cdef public Py_ssize_t _lit_len, _queued, _high, _low, _output_limit, _busy_mark

    cpdef Py_ssize_t _queue_text(self, str record) except -1
    cpdef Py_ssize_t _queue_records(self, record, tuple more) except -1
    cpdef Py_ssize_t _crossed_after_put(self, Py_ssize_t before) except -1
    cpdef _encode_text(self)
    cpdef bytearray _outgoing(self)
    cpdef Py_ssize_t _send_queued(self, send) except -1
