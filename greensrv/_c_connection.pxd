# The augmenting .pxd of greensrv._c_connection (connection.py compiled): Connection as one C
# type whose sans-IO parts are typed fields, so that every call on a part, and every internal
# step of the connection, is a C call. Public methods stay Python methods on the C type (put()
# takes *records); those the connection also calls itself, or passes as a callback, are cpdef,
# so a Python subclass's override is honoured (greensrv.testing.TestConnection overrides get());
# the internal steps are cdef: a subclass cannot replace them (docs/compiled.md).
# The parts are cimported by their compiled names, under names of their own (C...):
# connection.py imports the same classes by their Python names, which Cython would otherwise
# take for these cimports. (Filter is cimported by its Python name: a filter compiled in
# Python mode subclasses it, which needs the cimported and imported names to agree.)
cimport cython
from greensrv._c_connection_state cimport ConnectionState as CConnectionState
from greensrv._c_input_clock cimport InputClock as CInputClock
from greensrv._c_output_queue cimport OutputQueue as COutputQueue
from greensrv.filters.base cimport Filter

cdef object NEED_DATA, _NOTHING, _END, READY, TIMEOUT, WAKE
cdef object CLOSED, CLOSING, DONE, FIN_SENT, OPEN, PEER_CLOSED, READING, STOPPED
cdef int IDLE, RECORD, EMPTIED, FELL_TO_LOW, OVER_LIMIT, ROSE_ABOVE_HIGH
cdef Py_ssize_t RECV_SIZE

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)

cdef inline bint _is_ascii(str text) noexcept:
    return PyUnicode_IS_ASCII(text)

# time.monotonic's clock without a Python call: CLOCK_MONOTONIC is the clock CPython reads
# for it on Linux; elsewhere _clock_now calls time.monotonic itself (_monotonic).
cdef extern from *:
    """
    #include <time.h>
    #if defined(__linux__) && defined(CLOCK_MONOTONIC)
    #define GREENSRV_C_CLOCK 1
    static double greensrv_clock_now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    }
    #else
    #define GREENSRV_C_CLOCK 0
    static double greensrv_clock_now(void) { return 0.0; }
    #endif
    """
    const bint GREENSRV_C_CLOCK
    double greensrv_clock_now() noexcept

cdef object _monotonic

cdef inline double _clock_now() except? -1.0:
    if GREENSRV_C_CLOCK:
        return greensrv_clock_now()
    return _monotonic()

cdef class Connection

cdef class _Flusher:
    cdef object __weakref__
    cdef object _loop
    cdef list _pending
    cdef bint _scheduled

    cdef add(self, Connection conn)
    @cython.locals(pending=list, conn=Connection)
    cpdef _run(self)  # conn typed: its _flush_if_due is a C method

cdef object _FLUSHERS, _LAST_FLUSHER
cdef _Flusher _flusher_of(hub)

cdef class Connection:
    cdef object __weakref__
    cdef Filter _in
    cdef COutputQueue _queue
    cdef CConnectionState _state
    cdef CInputClock _clock
    cdef object _hooks, _limits, _hub, _loop, _transport, _rw, _ww, _waiting, _linger
    cdef _Flusher _flusher
    cdef object _flush_event, _events, _event_glet, _eof_records, _data, _sock
    cdef object _events_to, _armed_timer  # idle_greenlets=False (greensrv.event_life)
    cdef bint _writing, _first_read, _flush_due
    cdef Py_ssize_t _discarded, _bytes_out
    cdef public object error, id, proxy, remote_address, server

    cdef _attach(self)
    cdef _write_watcher(self)
    cpdef get(self, timeout=*)
    cdef _get_of_subclass(self)
    cpdef _wake(self)
    cdef _stop_input(self)
    cdef _wait(self, watcher, timeout)
    cdef _get_slow(self, timeout, bint parsed)
    cdef _read_more(self, deadline)
    cdef _recv(self, transport)
    cdef _end_of_input(self, bint peer_closed)
    cdef _wait_readable(self, deadline)
    cdef _timed_out(self, deadline, pending)
    cdef _wait_for_drain(self, deadline)
    cpdef flush(self, timeout=*)
    cdef _schedule_flush(self)
    cdef _put_a_lot(self, Py_ssize_t before)
    cdef _too_slow(self, Py_ssize_t queued)
    cdef _flush_if_due(self)
    cpdef _flush(self)
    cdef _start_writing(self)
    cdef _stop_writing(self)
    cdef _drained_below_low(self)
    cdef _write_failed(self, exc)
    cdef _send_fin(self)
    cdef _start_linger(self, seconds)
    cdef _output_event(self, str kind)
    cpdef _run_output_events(self)
    cdef _run_output_event(self, str kind, callbacks)
    cpdef _discard_input(self)
    cdef _drain(self, double until)
    cpdef close(self)
    cdef _finish(self, deadline)
    cpdef set_input_filter(self, new_filter)
    cpdef set_output_filter(self, new_filter)
    # idle_greenlets=False (greensrv.event_life)
    cdef _arm(self, target, bint for_input)
    cdef _disarm(self, reason)
    cdef _poll(self, bint read)

cpdef attach(Connection conn)
cpdef finish(Connection conn, deadline)
cpdef stop_input(Connection conn)
cpdef str how_input_ended(Connection conn)
cpdef double accepted_at(Connection conn) except? -1
cpdef overload_progress(Connection conn)
cpdef shed(Connection conn, error)
cpdef run_events_by(Connection conn, events)
cpdef arm(Connection conn, target, bint for_input)
cpdef disarm(Connection conn, reason)
cpdef poll(Connection conn, bint read)
cpdef run_output_event(Connection conn, str kind)
