# The augmenting .pxd of greensrv._c_connection_input; the layout is in connection_input.pxd.
include "connection_input.pxd"
