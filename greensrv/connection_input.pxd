# The C layout of InputSide (connection_input.py is the source): the steps of get() past its
# fast path as C calls. Compiled as greensrv._c_connection_input (its _c_connection_input.pxd
# includes this file); connection_output cimports it.
from greensrv.connection_fields cimport ConnectionFields

cdef class InputSide(ConnectionFields):
    cdef _wait(self, watcher, timeout)
    cpdef _get_slow(self, timeout, bint parsed=*)
    cdef _read_more(self, deadline)
    cdef _recv(self, transport)
    cdef _end_of_input(self, bint peer_closed)
    cdef _wait_readable(self, deadline)
