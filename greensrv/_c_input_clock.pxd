# The augmenting .pxd of greensrv._c_input_clock (input_clock.py compiled): the clock's times
# as C fields and its steps as C calls of the connection that owns it (_c_connection.pxd
# cimports it by this name). The fields stay public: tests read them.

cdef class InputClock:
    cdef public object partial_since, waiting_since
    cdef public double accepted_at, idle_spent, last_recv
    cdef public Py_ssize_t bytes_in

    cpdef received(self, Py_ssize_t size, double now)
    cpdef limit(self, limits, double now, Py_ssize_t pending)
    cdef _record_due(self, limits, Py_ssize_t pending)
    cpdef waited(self, double start, double now)
    cpdef int expired(self, limits, double now, Py_ssize_t pending) except -1
    cpdef bint idle_ran_out(self, limits) except -1
    cpdef str overdue_reason(self, limits, Py_ssize_t pending, double now)
    cpdef drained(self, double now)
    cpdef progress(self, bint reading, Py_ssize_t pending)
