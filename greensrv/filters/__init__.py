"""Sans-IO framing filters: bytes to records and records to bytes, never touching a socket.

See ``docs/filters.md`` for the guide, the POE::Filter mapping and how to write your own.
"""

from ..errors import FilterError
from .base import NEED_DATA, Filter
from .block import Block
from .jsonlines import JsonLines
from .length import LengthPrefixed
from .line import Line
from .mapgrep import Grep, Map
from .netstring import Netstring
from .resp import Attributed, Push, Resp, RespError, Verbatim
from .stack import Stack
from .stream import Stream

__all__ = [
    "NEED_DATA",
    "Attributed",
    "Block",
    "Filter",
    "FilterError",
    "Grep",
    "JsonLines",
    "LengthPrefixed",
    "Line",
    "Map",
    "Netstring",
    "Push",
    "Resp",
    "RespError",
    "Stack",
    "Stream",
    "Verbatim",
]
