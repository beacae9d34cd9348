# The augmenting .pxd of greensrv._c_transport (transport.py compiled): a plain transport's
# read and write as libc recv/send on the socket's descriptor. transport.py binds _OS_IO to
# False (the socket's methods, as Python); here it is the C constant GREENSRV_OS_IO, 1 where
# libc has MSG_DONTWAIT (0 elsewhere: Windows), and _recv_from/_send_to are inline C functions.
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno

cdef extern from *:
    """
    #if !defined(_WIN32) && defined(__has_include)
    #if __has_include(<sys/socket.h>)
    #include <sys/types.h>
    #include <sys/socket.h>
    #endif
    #endif
    #ifdef MSG_DONTWAIT
    #define GREENSRV_OS_IO 1
    #ifndef MSG_NOSIGNAL
    #define MSG_NOSIGNAL 0
    #endif
    #define greensrv_os_recv(fd, buf, n) recv((fd), (buf), (size_t)(n), MSG_DONTWAIT)
    #define greensrv_os_send(fd, buf, n) send((fd), (buf), (size_t)(n), MSG_DONTWAIT | MSG_NOSIGNAL)
    #else
    #define GREENSRV_OS_IO 0
    #define greensrv_os_recv(fd, buf, n) (errno = ENOSYS, (Py_ssize_t)-1)
    #define greensrv_os_send(fd, buf, n) (errno = ENOSYS, (Py_ssize_t)-1)
    #endif
    /* One buffer for every read of the process: a read copies what came into a bytes object of
       its size, instead of allocating the whole size and shrinking it, as socket.recv does.
       The GIL is held from the recv to the copy, so no two reads use it at once. */
    #define GREENSRV_RECV_BUFFER_SIZE 65536
    static char greensrv_recv_buffer[GREENSRV_RECV_BUFFER_SIZE];
    """
    const bint _OS_IO "GREENSRV_OS_IO"
    const Py_ssize_t GREENSRV_RECV_BUFFER_SIZE
    char *greensrv_recv_buffer
    Py_ssize_t greensrv_os_recv(int fd, char *buf, Py_ssize_t size)
    Py_ssize_t greensrv_os_send(int fd, const char *buf, Py_ssize_t size)

# C's errno under another name: transport.py imports the Python module errno.
cdef extern from "errno.h":
    int os_errno "errno"
    int EINTR, EAGAIN, EWOULDBLOCK


cdef inline bint _failed() except -1:
    """After a failed recv/send: retry (EINTR, once Python's signal handlers ran: PEP 475),
    False for EAGAIN, or raise the errno's OSError subclass with its strerror, as the socket's
    methods do (EBADF once the socket is closed: its fileno() is then -1)."""
    if os_errno == EINTR:
        PyErr_CheckSignals()  # a handler's exception propagates
        return True
    if os_errno == EAGAIN or os_errno == EWOULDBLOCK:
        return False
    PyErr_SetFromErrno(OSError)
    return -1


cdef inline object _recv_from(object raw, Py_ssize_t size):
    """Up to ``size`` bytes (at most the buffer's 64 KiB: a read may return less than asked)."""
    cdef Py_ssize_t n
    cdef int fd = raw.fileno()
    if size > GREENSRV_RECV_BUFFER_SIZE:
        size = GREENSRV_RECV_BUFFER_SIZE
    while True:
        n = greensrv_os_recv(fd, greensrv_recv_buffer, size)
        if n >= 0:
            return PyBytes_FromStringAndSize(greensrv_recv_buffer, n)
        if not _failed():
            return None


cdef inline Py_ssize_t _send_to(object raw, object data) except -1:
    cdef Py_buffer view
    cdef Py_ssize_t n
    cdef int fd = raw.fileno()
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        while True:
            n = greensrv_os_send(fd, <const char *>view.buf, view.len)
            if n >= 0:
                return n
            if not _failed():
                return 0
    finally:
        PyBuffer_Release(&view)
