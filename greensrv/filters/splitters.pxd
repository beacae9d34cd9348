# The C layout of the Line splitters, for Cython (splitters.py is the source, this only adds
# types). Compiled as greensrv.filters._c_splitters (its _c_splitters.pxd includes this file);
# the compiled Line cimports Splitter from here and calls its methods through the C vtable.

cdef class Splitter:
    cdef public bytes sep, partial
    cdef public object sep_str
    cdef public Py_ssize_t slack
    cdef public bint batches

    cpdef tuple find(self, bytearray buf, Py_ssize_t pos)
    cpdef Py_ssize_t line_end(self, bytearray buf, Py_ssize_t start, Py_ssize_t i) except -1
    cpdef list split_text(self, str text, bytearray raw)
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
