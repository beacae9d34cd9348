# The C layout of a Connection's fields, for Cython (connection_fields.py is the source). Compiled
# as greensrv._c_connection_fields (its _c_connection_fields.pxd includes this file); the parts
# of the chain (connection_input, connection_output, connection) cimport it. Fields the
# application or the server reads or sets are public.
from greensrv.connection_state cimport ConnectionState
from greensrv.filters.base cimport Filter
from greensrv.output_queue cimport OutputQueue

cdef class ConnectionFields(OutputQueue):
    cdef object __weakref__
    cdef public Filter _in
    cdef public ConnectionState _state
    cdef public object _hooks, _limits, _hub, _loop, _transport, _rw, _ww, _waiting
    cdef public object _linger
    cdef public object _flush_cb, _flush_event, _events, _event_glet, _eof_records
    cdef public object _partial_since, _read_wait_since
    cdef public bint _writing, _first_read
    cdef public double _idle_spent, _last_recv, _accepted_at
    cdef public Py_ssize_t _discarded, _bytes_in, _bytes_out
    cdef public object error, _data, id, proxy, remote_address, remote_ip, remote_port
    cdef public object server, socket
