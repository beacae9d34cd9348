"""Sans-IO framing filters: bytes to records and records to bytes, never touching a socket."""

from ..errors import FilterError
from .base import NEED_DATA, Filter
from .block import Block
from .line import Line
from .stream import Stream

__all__ = ["NEED_DATA", "Block", "Filter", "FilterError", "Line", "Stream"]
