"""greensrv.testing.check_filter: passes correct filters, catches the classic framing bugs."""

from __future__ import annotations

from typing import Any

import pytest

from greensrv.filters import NEED_DATA, Filter, Line
from greensrv.testing import check_filter


class ForgetsPartialRecords(Filter):
    """Bug: parses each received chunk on its own, as a naive data_received would."""

    def receive(self, data: bytes) -> None:
        self._buf = bytearray(data)
        self._start = 0

    def next_record(self) -> Any:
        i = self._buf.find(b"\n", self._start)
        if i < 0:
            return NEED_DATA
        record = bytes(self._buf[self._start : i])
        self._start = i + 1
        return record

    def encode(self, record: Any) -> bytes:
        return bytes(record) + b"\n"

    def clone(self) -> ForgetsPartialRecords:
        return ForgetsPartialRecords()


class LosesPending(ForgetsPartialRecords):
    """Bug: buffers correctly but reports nothing pending (set_filter would lose bytes)."""

    def receive(self, data: bytes) -> None:
        Filter.receive(self, data)

    def pending(self) -> bytes:
        return b""

    def clone(self) -> LosesPending:
        return LosesPending()


class EncodeManyDiffers(Line):
    def encode_many(self, records: Any) -> bytes:
        return b"".join(self.encode(r) for r in reversed(list(records)))

    def clone(self) -> EncodeManyDiffers:
        return EncodeManyDiffers()


def test_returns_the_wire_bytes():
    assert check_filter(Line(), ["a", "b"]) == b"a\r\nb\r\n"


def test_catches_a_filter_that_forgets_partial_records():
    with pytest.raises(AssertionError, match="one byte at a time"):
        check_filter(ForgetsPartialRecords(), [b"ab", b"cd"])


def test_catches_a_wrong_pending():
    with pytest.raises(AssertionError, match="pending"):
        check_filter(LosesPending(), [b"ab", b"cd"])


def test_catches_encode_many_differing_from_encode():
    with pytest.raises(AssertionError, match="encode_many"):
        check_filter(EncodeManyDiffers(), ["a", "b"])


def test_catches_records_that_do_not_survive_their_framing():
    with pytest.raises(AssertionError, match="got"):
        check_filter(Line(), ["two\r\nlines"])


def test_explicit_trailing_bytes():
    check_filter(Line(), ["x"], trailing=b"partial line")


def test_rejects_non_filters():
    with pytest.raises(TypeError):
        check_filter("Line", [])  # type: ignore[arg-type]
