# The augmenting .pxd of greensrv.filters._c_resp_encode (resp_encode.py compiled): the reply
# builders as C functions with typed locals (Resp calls them through Python; each is one call).
cimport cython

@cython.locals(n=Py_ssize_t)
cpdef bytes bulk(bytes data)
cpdef bytes simple_string(str text)
@cython.locals(message=str)
cpdef bytes error(record, int protocol)
@cython.locals(n=Py_ssize_t, parts=list)
cpdef bytes encode_command(record)
