# The augmenting .pxd of greensrv._c_connection (connection.py compiled): Connection as the last
# C type of the chain OutputQueue -> ConnectionFields -> InputSide -> OutputSide -> Connection.
# Its public methods stay Python methods on the C type (put() takes *records); get() is cpdef
# so __iter__ calls it in C.
from greensrv.connection_output cimport OutputSide

cdef object NEED_DATA, _NOTHING

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)

cdef inline bint _is_ascii(str text) noexcept:
    return PyUnicode_IS_ASCII(text)

cdef class Connection(OutputSide):
    cpdef get(self, timeout=*)
