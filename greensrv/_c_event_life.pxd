# The augmenting .pxd of greensrv._c_event_life (event_life.py compiled): EventClient and
# EventLife as C types with typed fields, so that an event's dispatch, its per-record loop and
# the pool's bookkeeping are C calls and C field reads (docs/compiled.md). POOL_SIZE stays a
# Python name (tests read it).

# The connection's functions, cimported under the names event_life.py imports them by: Cython
# takes the imports for these cimports, so each call is a C call (and the module stays pure
# unless the connection runs compiled: accelerate's ``requires``).
from greensrv._c_connection cimport arm, disarm, poll, run_events_by, run_output_event

cdef int ARMED, BUSY, ENDING

cdef class EventLife

cdef class EventClient:
    cdef public object conn, rest, pending
    cdef public EventLife life
    cdef public int state

    cpdef switch(self, reason)
    cpdef output_event(self, str kind)

cdef class EventLife:
    cdef object client_input, report_error, conclude, _reason
    cdef EventClient _client
    cdef set clients
    cdef bint shutdown_on_error
    cdef public bint released
    cdef public object idle

    cpdef adopt(self, conn, rest)
    cdef run(self, EventClient client, bint read)
    cdef _output_events(self, EventClient client)
    cpdef release(self)
    cdef dispatch(self, EventClient client, reason)
    cdef _event(self, EventClient client, reason, me)
    cdef _conclude(self, EventClient client, exc)
