# The augmenting .pxd of greensrv.filters._c_splitters; the layout is in splitters.pxd.
include "splitters.pxd"
