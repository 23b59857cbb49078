"""The second-order guide's examples (docs/guides/second-order.md) run and print what the guide says they print."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "second-order.md"
BLOCK = re.compile(r"```python\n(.*?)```\n\n(.*?)(?=\n\n|\Z)", re.S)
PRINTS = re.compile(r"prints `([^`]+)`(?:, then `([^`]+)`)?")


def examples() -> list[tuple[str, list[str]]]:
    section = GUIDE.read_text(encoding="utf-8")
    found = []
    for code, after in BLOCK.findall(section):
        claim = PRINTS.search(after.replace("\n", " "))
        assert claim, f"a second-order example is not followed by what it prints: {after[:80]!r}"
        found.append((code, [line for line in claim.groups() if line is not None]))
    return found


EXAMPLES = examples()


def test_the_section_has_its_two_examples() -> None:
    assert len(EXAMPLES) == 2


@pytest.mark.parametrize(("code", "expected"), EXAMPLES, ids=["numpy-hvp", "torch-order-2"])
def test_second_order_example_prints_what_the_guide_says(code: str, expected: list[str]) -> None:
    if "import torch" in code:
        pytest.importorskip("torch")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, str(GUIDE), "exec"), {"__name__": "guide"})
    assert out.getvalue().splitlines() == expected
