# The augmenting .pxd of greensrv._c_connection_output; the layout is in connection_output.pxd.
include "connection_output.pxd"
