"""Line's input modes as splitters, and the C batch splitter agreeing with the Python one.

``split_newline_batch`` (``_c_linesplit.pyx``) may decline a batch (None) but must never split
one differently from the pure-Python path it replaces (``NewlineSplitter``).
"""

from __future__ import annotations

import os

import pytest
from helpers import need_program
from hypothesis import given, settings
from hypothesis import strategies as st

from greensrv.filters import Line
from greensrv.filters.line import _LINESPLIT
from greensrv.filters.splitters import (
    LiteralSplitter,
    NewlineSplitter,
    RegexpSplitter,
    StrictCrlfSplitter,
)

PURE = os.environ.get("GREENSRV_PURE_PYTHON", "") not in ("", "0")


@pytest.mark.parametrize("options, splitter", [
    ({}, NewlineSplitter),
    ({"literal": "|"}, LiteralSplitter),
    ({"input_literal": b"\r\n\r\n"}, LiteralSplitter),
    ({"strict_crlf": True}, StrictCrlfSplitter),
    ({"input_regexp": rb"\r?\n"}, RegexpSplitter),
])
def test_each_mode_gets_its_splitter_at_construction(options, splitter):
    f = Line(**options)
    assert type(f._splitter).__name__ == splitter.__name__
    assert f.clone()._splitter is f._splitter  # settings only: shared by clones


def test_the_c_splitter_is_used_exactly_when_compiled_and_the_mode_allows_it():
    if PURE or _LINESPLIT is None:
        assert Line()._batch_split is None
        if os.environ.get("GREENSRV_EXPECT_COMPILED") == "1" and not PURE:
            need_program("cc", "gcc")  # no compiler: a pure install, as documented
            pytest.fail("the compiled build is expected but _c_linesplit is missing")
        return
    assert Line()._batch_split is not None
    assert Line(encoding=None)._batch_split is not None
    assert Line(encoding="latin-1")._batch_split is not None
    assert Line(literal="\n")._batch_split is None  # a literal mode: no \r dropping
    assert Line(encoding="utf-16")._batch_split is None  # not ASCII-compatible


lines = st.lists(st.binary(max_size=12).map(lambda b: b.replace(b"\n", b"")), min_size=1,
                 max_size=12)
endings = st.lists(st.sampled_from([b"\n", b"\r\n"]), min_size=12, max_size=12)


@settings(max_examples=300, deadline=None)
@given(lines, endings, st.integers(min_value=0, max_value=14), st.booleans())
def test_the_c_batch_splitter_agrees_with_the_python_one(parts, ends, limit, as_text):
    if _LINESPLIT is None:
        pytest.skip("the C splitter is not in use (a pure build, or not compiled)")
    data = b"".join(p + e for p, e in zip(parts, ends, strict=False))
    buf = bytearray(b"xx" + data + b"tail")  # the batch sits inside a larger buffer
    got = _LINESPLIT.split_newline_batch(buf, 2, 2 + len(data), limit, as_text)
    python = NewlineSplitter()
    if as_text:
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            assert got is None
            return
        expected = python.split_text(text, bytearray(data))
    else:
        expected = python.split_bytes(data)
    assert expected is not None
    assert not expected.pop()  # the batch ends with a terminator: an empty last item
    if max(map(len, expected)) > limit:
        assert got is None
    else:
        assert got == expected


def test_the_c_batch_splitter_refuses_a_range_outside_the_buffer():
    if _LINESPLIT is None:
        pytest.skip("the C splitter is not in use (a pure build, or not compiled)")
    with pytest.raises(ValueError, match="bad range"):
        _LINESPLIT.split_newline_batch(bytearray(b"a\n"), 0, 3, 10, True)
    assert _LINESPLIT.split_newline_batch(bytearray(b"a\nb"), 0, 3, 10, True) is None


def test_the_c_batch_splitter_finds_a_non_ascii_byte_anywhere_in_the_batch_only():
    """The ASCII check reads eight bytes at a time, then the tail: a byte above 0x7f at every
    position of the batch refuses it, and one just outside the batch's range does not."""
    if _LINESPLIT is None:
        pytest.skip("the C splitter is not in use (a pure build, or not compiled)")
    data = b"".join(b"line %02d\r\n" % n for n in range(7))  # 63 bytes: words and a tail
    for i in range(len(data)):
        if data[i] in b"\r\n":
            continue
        spoiled = bytearray(b"\xff" + data + b"\xff")
        spoiled[1 + i] = 0xE9
        assert _LINESPLIT.split_newline_batch(spoiled, 1, 1 + len(data), 100, True) is None, i
        assert _LINESPLIT.split_newline_batch(spoiled, 1, 1 + len(data), 100, False) is not None
    framed = bytearray(b"\xff" + data + b"\xff")
    assert _LINESPLIT.split_newline_batch(framed, 1, 1 + len(data), 100, True) == [
        f"line {n:02d}" for n in range(7)]
