# The augmenting .pxd of greensrv.filters._c_base (base.py compiled); the layout is in base.pxd.
include "base.pxd"
