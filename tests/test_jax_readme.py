"""The JAX quickstart (docs/guides/jax.md, and the README's JAX section while it has one) runs and prints what the
page says it prints."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("jax")

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guides" / "jax.md"
README = ROOT / "README.md"
pytestmark = pytest.mark.jax


def quickstarts() -> list[tuple[str, str]]:
    found = [("docs/guides/jax.md", GUIDE.read_text(encoding="utf-8").split("\n## Quickstart\n", 1)[1])]
    readme = README.read_text(encoding="utf-8")
    if "\n## JAX\n" in readme:
        found.append(("README.md", readme.split("\n## JAX\n", 1)[1]))
    return [(page, section.split("\n## ", 1)[0]) for page, section in found]


@pytest.mark.parametrize(("page", "section"), quickstarts(), ids=lambda v: v if v.endswith(".md") else "")
def test_the_jax_quickstart_prints_what_the_page_says(page: str, section: str) -> None:
    code, after = re.search(r"```python\n(.*?)```\n\n(.*?)(?=\n\n)", section, re.S).groups()
    claim = after.replace("\n", " ").split("prints ", 1)[1].split(" (", 1)[0]
    expected = re.findall(r"`([^`]+)`", claim)
    assert expected, page
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, page, "exec"), {"__name__": "quickstart"})
    assert out.getvalue().splitlines() == expected
