# The augmenting .pxd of greensrv._c_output_queue; the layout is in output_queue.pxd.
include "output_queue.pxd"
