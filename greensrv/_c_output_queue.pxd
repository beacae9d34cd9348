# The augmenting .pxd of greensrv._c_output_queue (output_queue.py compiled; Cython's pure-Python
# mode: this only adds types). The connection cimports OutputQueue by this name, reads its
# counts as C fields and queues and sends through C calls. The watermarks are clamped to
# sys.maxsize at construction (output_queue.py), so no option value overflows a C integer.
from greensrv.filters.base cimport Filter  # by its Python name: see _c_connection.pxd

cdef class OutputQueue:
    cdef public Filter _out
    cdef public bytearray _outbuf
    cdef public list lazy
    cdef public str _lit
    cdef public Py_ssize_t lit_len, queued, high, low, _output_limit, busy_mark

    cpdef Py_ssize_t queue_text(self, str record) except -1
    cpdef Py_ssize_t queue_records(self, record, tuple more) except -1
    cpdef Py_ssize_t crossed_after_put(self, Py_ssize_t before) except -1
    cpdef encode_text(self)
    cpdef bytearray outgoing(self)
    cpdef Py_ssize_t send_queued(self, send) except -1
    cpdef switch_output_filter(self, Filter new_filter, bint more_to_come)
    cpdef end_output(self)
    cpdef discard(self)
