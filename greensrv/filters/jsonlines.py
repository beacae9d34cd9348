"""JsonLines: one JSON value per ``\\n``-terminated line (https://jsonlines.org/).

The safe replacement for POE::Filter::Reference: Reference ships Perl data with Storable or
YAML, and the Python equivalent, pickle, runs code chosen by whoever wrote the bytes. JSON
decoding builds only dicts, lists, strings, numbers, booleans and None, so a hostile peer can
send bad data but never code. Never put ``pickle.loads`` in ``loads``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

from ..errors import FilterError
from .base import NEED_DATA
from .line import Line

__all__ = ["JsonLines"]

#: Longest JSON line accepted by default: 1 MiB is far above a typical message on a line
#: protocol and bounds what one client makes the server buffer and parse.
DEFAULT_MAX_LENGTH = 1024 * 1024

_compact_dumps = partial(json.dumps, separators=(",", ":"))

#: What take_ready() gives: always empty, so every record goes through next_record.
_NOTHING_READY: list[Any] = []


class JsonLines(Line):
    """Any JSON value per line; input accepts ``\\n`` or ``\\r\\n``, output ends with ``\\n``.

    ``dumps(value) -> str | bytes`` and ``loads(bytes) -> value`` replace the codec (e.g.
    ``orjson.dumps``/``orjson.loads``); ``dumps`` must not produce a newline. Blank lines are
    skipped. A line that does not parse, or that nests too deeply for the parser, raises
    :class:`~greensrv.FilterError`; ``encode`` of a value ``dumps`` refuses raises its error
    (``TypeError`` for ``json.dumps``).
    """

    __slots__ = ("_dumps", "_jmax", "_loads")

    #: next_record() takes its lines from Line.next_record, so Line may split whole-line chunks
    #: in receive() (unannotated: a class flag, not a field).
    _uses_line_next_record = True

    def __init__(
        self,
        max_length: int = DEFAULT_MAX_LENGTH,
        dumps: Callable[[Any], str | bytes] = _compact_dumps,
        loads: Callable[[bytes], Any] = json.loads,
    ) -> None:
        super().__init__(output_literal="\n", encoding=None, max_length=max_length)
        self._jmax = max_length
        self._dumps = dumps
        self._loads = loads

    def next_record(self) -> Any:
        while True:
            line = Line.next_record(self)
            if line is NEED_DATA:
                return line
            if line.strip():
                return self._parse(line)

    def take_ready(self) -> list[Any]:
        # The ready list holds raw lines, not yet decoded: every record goes through
        # next_record, which decodes it.
        return _NOTHING_READY

    def feed(self, data: bytes) -> list[Any]:
        parse = self._parse
        return [parse(line) for line in Line.feed(self, data) if line.strip()]

    def feed_eof(self) -> list[Any]:
        parse = self._parse
        return [parse(line) for line in Line.feed_eof(self) if line.strip()]

    def _parse(self, line: bytes) -> Any:
        try:
            return self._loads(line)
        except (ValueError, RecursionError) as exc:
            raise FilterError(f"JsonLines: bad JSON in a {len(line)}-byte line: "
                              f"{str(exc)[:200]}") from None

    def encode(self, record: Any) -> bytes:
        text = self._dumps(record)
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        if 10 in data:  # (a byte as an int: memchr; a bytes needle costs far more)
            raise ValueError("JsonLines: dumps produced a newline; use a compact dumps")
        return data + b"\n"

    def encode_many(self, records: Any) -> bytes:
        encode = self.encode
        return b"".join([encode(r) for r in records])

    def clone(self) -> JsonLines:
        return JsonLines(self._jmax, self._dumps, self._loads)

    def __repr__(self) -> str:
        return f"JsonLines(max_length={self._jmax})"

