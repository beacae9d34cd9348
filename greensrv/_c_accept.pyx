# cython: language_level=3
"""One accept on a listening descriptor, without an exception when nobody is waiting.

A listener accepts until the backlog is empty, so with clients arriving one at a time every
second accept finds nothing: Python's ``socket._accept`` then raises ``BlockingIOError``, about
4 % of a short connection's instructions. :func:`accept` calls ``accept4`` itself and returns
None instead; the accepted descriptor is already non-blocking and close-on-exec (one system
call less than setting it afterwards), and the address is the tuple (or unix path) Python's
``socket.accept`` gives. Linux only (``accept4``); elsewhere, and when this module is not
compiled, ``greensrv/listeners.py`` accepts through Python's socket (its fallback).
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.exc cimport PyErr_SetFromErrno
from libc.string cimport memset


cdef extern from "Python.h":
    object PyUnicode_DecodeFSDefault(const char *path)


cdef extern from *:
    """
    #if defined(__linux__)
    #include <errno.h>
    #include <stddef.h>
    #include <sys/types.h>
    #include <sys/socket.h>
    #include <sys/un.h>
    #include <netinet/in.h>
    #include <arpa/inet.h>
    #include <netdb.h>
    #define GS_HAVE_ACCEPT4 1
    #define GS_AF_INET AF_INET
    #define GS_AF_INET6 AF_INET6
    #define GS_AF_UNIX AF_UNIX
    typedef struct sockaddr_storage gs_addr;
    typedef socklen_t gs_len;
    /* accept4, retried on EINTR; -2 for "nothing waiting" (EAGAIN), -1 and errno otherwise. */
    static int gs_accept(int fd, gs_addr *addr, gs_len *len) {
        int r;
        do {
            r = accept4(fd, (struct sockaddr *)addr, len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        } while (r < 0 && errno == EINTR);
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return -2;
        return r;
    }
    static int gs_family(gs_addr *a) { return a->ss_family; }
    /* The numeric host CPython's makeipaddr writes (getnameinfo, NI_NUMERICHOST). */
    static int gs_host(gs_addr *a, gs_len len, char *host, size_t size) {
        return getnameinfo((struct sockaddr *)a, len, host, size, NULL, 0, NI_NUMERICHOST);
    }
    static unsigned int gs_port(gs_addr *a) {
        return a->ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)a)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)a)->sin_port);
    }
    static unsigned int gs_flowinfo(gs_addr *a) {
        return ntohl(((struct sockaddr_in6 *)a)->sin6_flowinfo);
    }
    static unsigned int gs_scope_id(gs_addr *a) {
        return ((struct sockaddr_in6 *)a)->sin6_scope_id;
    }
    static char *gs_unix_path(gs_addr *a) { return ((struct sockaddr_un *)a)->sun_path; }
    static size_t gs_unix_path_offset(void) { return offsetof(struct sockaddr_un, sun_path); }
    #else
    /* No accept4: AVAILABLE is false and nothing below is called. */
    #define GS_HAVE_ACCEPT4 0
    #define GS_AF_INET (-1)
    #define GS_AF_INET6 (-2)
    #define GS_AF_UNIX (-3)
    typedef struct { int unused; } gs_addr;
    typedef int gs_len;
    static int gs_accept(int fd, gs_addr *addr, gs_len *len) { return -1; }
    static int gs_family(gs_addr *a) { return 0; }
    static int gs_host(gs_addr *a, gs_len len, char *host, size_t size) { return -1; }
    static unsigned int gs_port(gs_addr *a) { return 0; }
    static unsigned int gs_flowinfo(gs_addr *a) { return 0; }
    static unsigned int gs_scope_id(gs_addr *a) { return 0; }
    static char *gs_unix_path(gs_addr *a) { return (char *)""; }
    static size_t gs_unix_path_offset(void) { return 0; }
    #endif
    """
    int GS_HAVE_ACCEPT4, GS_AF_INET, GS_AF_INET6, GS_AF_UNIX
    ctypedef struct gs_addr:
        pass
    ctypedef int gs_len
    int gs_accept(int fd, gs_addr *addr, gs_len *len) nogil
    int gs_family(gs_addr *a) nogil
    int gs_host(gs_addr *a, gs_len len, char *host, size_t size) nogil
    unsigned int gs_port(gs_addr *a) nogil
    unsigned int gs_flowinfo(gs_addr *a) nogil
    unsigned int gs_scope_id(gs_addr *a) nogil
    char *gs_unix_path(gs_addr *a) nogil
    size_t gs_unix_path_offset() nogil


#: False where the platform has no ``accept4``: the listener then accepts through Python.
AVAILABLE = bool(GS_HAVE_ACCEPT4)


def accept(int fd):
    """``(descriptor, address)`` of the next client on listening descriptor ``fd``, or None when
    none is waiting. The descriptor is non-blocking and close-on-exec; the caller owns it.
    Any other failure raises ``OSError`` (its errno subclass), as ``socket.accept`` would."""
    cdef gs_addr addr
    cdef gs_len length = sizeof(addr)
    cdef int conn
    memset(&addr, 0, sizeof(addr))
    conn = gs_accept(fd, &addr, &length)
    if conn == -2:
        return None
    if conn < 0:
        PyErr_SetFromErrno(OSError)
    try:
        return conn, _address(&addr, length)
    except BaseException:
        _close(conn)
        raise


cdef object _address(gs_addr *addr, gs_len length):
    """What CPython's ``makesockaddr`` gives for an accepted peer of these families."""
    cdef char host[1025]
    cdef int family
    cdef char *path
    cdef size_t path_length
    if length == 0:
        return None
    family = gs_family(addr)
    if family == GS_AF_INET or family == GS_AF_INET6:
        if gs_host(addr, length, host, sizeof(host)) != 0:
            raise OSError(f"accept: cannot format the peer's address (family {family})")
        if family == GS_AF_INET:
            return host.decode("ascii"), gs_port(addr)
        return host.decode("ascii"), gs_port(addr), gs_flowinfo(addr), gs_scope_id(addr)
    if family == GS_AF_UNIX:
        path = gs_unix_path(addr)
        path_length = <size_t>length - gs_unix_path_offset()
        if path_length > 0 and path[0] == 0:  # Linux's abstract namespace: bytes
            return PyBytes_FromStringAndSize(path, path_length)
        return PyUnicode_DecodeFSDefault(path)
    return None


cdef void _close(int fd) noexcept:
    import os
    try:
        os.close(fd)
    except OSError:
        pass
