# The augmenting .pxd of greensrv.filters._c_resp_scan (resp_scan.py compiled): the scan reads
# the region through a C pointer (a byte is a C char; a payload is one PyBytes copy of its span,
# not a generic slice), and its steps are C calls returning C tuples.
cimport cython


@cython.locals(ntok=Py_ssize_t, i=Py_ssize_t, end=Py_ssize_t, j=Py_ssize_t, out=list,
               ends=list, tok=bytes, payloads=list)
cpdef tuple split_messages(list toks, Py_ssize_t max_bulk, Py_ssize_t max_line,
                           Py_ssize_t max_array)

@cython.locals(data=cython.p_uchar, n=Py_ssize_t, pos=Py_ssize_t, head=cython.uchar,
               count=Py_ssize_t, after=Py_ssize_t, begin=Py_ssize_t, end=Py_ssize_t,
               out=list, ends=list, items=list)
cpdef tuple scan_requests(bytes region, Py_ssize_t max_bulk, Py_ssize_t max_array)

@cython.locals(length=Py_ssize_t, begin=Py_ssize_t, end=Py_ssize_t)
cdef (Py_ssize_t, Py_ssize_t) _bulk(unsigned char *data, Py_ssize_t pos, Py_ssize_t n,
                                    Py_ssize_t max_bulk) noexcept

@cython.locals(value=Py_ssize_t, digits=Py_ssize_t)
cdef (Py_ssize_t, Py_ssize_t) _length(unsigned char *data, Py_ssize_t pos,
                                      Py_ssize_t n) noexcept
