# The augmenting .pxd of greensrv.filters._c_splitters (splitters.py compiled; this only adds
# types): the compiled Line cimports Splitter by this name (as CSplitter: line.py imports the
# Python name) and calls its methods through the C vtable.
cdef class Splitter:
    cdef public bytes sep, partial
    cdef public object sep_str
    cdef public Py_ssize_t slack
    cdef public bint batches

    cpdef tuple find(self, bytearray buf, Py_ssize_t pos)
    cpdef Py_ssize_t line_end(self, bytearray buf, Py_ssize_t start, Py_ssize_t i) except -1
    cpdef list split_text(self, str text, raw)
    cpdef list split_bytes(self, bytes data)
    cpdef check_tail(self, bytearray buf, Py_ssize_t pos, Py_ssize_t start)
    cpdef bytearray last_line(self, bytearray rest)

cdef class NewlineSplitter(Splitter):
    pass

cdef class LiteralSplitter(Splitter):
    pass

cdef class StrictCrlfSplitter(Splitter):
    pass

cdef class RegexpSplitter(Splitter):
    cdef public object regex
