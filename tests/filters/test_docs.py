"""Every Python example in docs/filters.md runs and its assertions hold (the worked example of
"write your own filter" passes check_filter)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "filters.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_guide_has_examples():
    assert len(BLOCKS) >= 6
    assert any("class TLV(Filter)" in b and "check_filter(TLV()" in b for b in BLOCKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index):
    code = compile(BLOCKS[index], f"{DOC.name}[python block {index}]", "exec")
    exec(code, {"__name__": f"docs_example_{index}"})


def test_every_poe_filter_is_mapped():
    text = DOC.read_text()
    for name in ("Line", "Stream", "Block", "Reference", "Grep", "Map", "Stackable",
                 "RecordBlock", "HTTPD", "HTTPChunk", "Zlib"):
        assert f"POE::Filter::{name}" in text, name
    assert "PerlInputFilterHandler" in text and "PerlOutputFilterHandler" in text
