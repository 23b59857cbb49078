"""The README's quickstart examples run and print what the README says they print.

Each ```python block of the Quickstart is followed by a sentence "prints `...`" (", then `...`" for a second
line); the test runs the block and compares its standard output line by line. A README that drifts from the code
fails here.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"```python\n(.*?)```\n(.*?)(?=\n\n|\Z)", re.S)
PRINTS = re.compile(r"prints `([^`]+)`(?: \([^)]*\))?(?:, then `([^`]+)`)?")


def quickstart_examples() -> list[tuple[str, list[str]]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    examples = []
    for code, after in BLOCK.findall(section):
        claim = PRINTS.search(after.replace("\n", " "))
        assert claim, f"a quickstart block is not followed by what it prints: {after[:80]!r}"
        examples.append((code, [line for line in claim.groups() if line is not None]))
    return examples


EXAMPLES = quickstart_examples()


def test_the_quickstart_has_its_three_examples() -> None:
    assert len(EXAMPLES) == 3


@pytest.mark.parametrize(("code", "expected"), EXAMPLES, ids=["numpy-gradcheck", "torch-check", "propagate"])
def test_quickstart_example_prints_what_the_readme_says(code: str, expected: list[str]) -> None:
    if "import torch" in code:
        pytest.importorskip("torch")
    if "data.digits" in code:
        pytest.importorskip("sklearn")
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue().splitlines() == expected
