"""The former name of ``helpers``, for branches written before the move: import ``helpers``.

To be deleted once every branch has merged the move (nothing in this tree imports it).
"""

from helpers import *  # noqa: F403
