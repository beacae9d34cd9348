# The C layout of OutputSide (connection_output.py is the source): the flush and the put()
# slow path as C calls. Compiled as greensrv._c_connection_output (its _c_connection_output.pxd
# includes this file); connection cimports it.
from greensrv.connection_input cimport InputSide

cdef class OutputSide(InputSide):
    cdef _put_a_lot(self, Py_ssize_t before)
    cdef _start_writing(self)
    cdef _stop_writing(self)
