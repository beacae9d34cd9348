# The augmenting .pxd of greensrv._c_connection_state (connection_state.py compiled; Cython's
# pure-Python mode: this only adds types). The connection cimports ConnectionState by this
# name, so it reads its states as C fields and makes its moves as C calls. The states stay
# public: tests and repr read them.
cdef class ConnectionState:
    cdef public object input, output

    cpdef stop_input(self)
    cpdef peer_closed(self)
    cpdef begin_closing(self)
    cpdef fin_sent(self)
    cpdef closed(self)
