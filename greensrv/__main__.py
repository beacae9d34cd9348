"""``python -m greensrv [OPTIONS] MODULE:NAME``: the same as the ``greensrv`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
