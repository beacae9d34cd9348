# The augmenting .pxd of greensrv._c_connection_state; the layout is in connection_state.pxd.
include "connection_state.pxd"
