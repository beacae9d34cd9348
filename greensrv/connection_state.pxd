# The C layout of ConnectionState, for Cython (pure-Python mode: connection_state.py is the
# source, this only adds types). Compiled as greensrv._c_connection_state (its
# _c_connection_state.pxd includes this file); connection_fields cimports it, so a Connection
# reads its states as C fields and makes its moves as C calls. The states stay public: tests
# and repr read them.

cdef class ConnectionState:
    cdef public object input, output

    cpdef stop_input(self)
    cpdef peer_closed(self)
    cpdef begin_closing(self)
    cpdef fin_sent(self)
    cpdef closed(self)
