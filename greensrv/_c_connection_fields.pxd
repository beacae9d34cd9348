# The augmenting .pxd of greensrv._c_connection_fields; the layout is in connection_fields.pxd.
include "connection_fields.pxd"
