"""The JAX guide's first example (docs/guides/jax.md) runs and prints what the page says it prints."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("jax")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "guides" / "jax.md"
pytestmark = pytest.mark.jax


def test_the_jax_guide_example_prints_what_the_page_says() -> None:
    section = PAGE.read_text(encoding="utf-8")
    code, after = re.search(r"```python\n(.*?)```\n\n(.*?)(?=\n\n)", section, re.S).groups()
    claim = after.replace("\n", " ").split("prints ", 1)[1].split(" (", 1)[0]
    expected = re.findall(r"`([^`]+)`", claim)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, str(PAGE), "exec"), {"__name__": "jax_guide"})
    assert out.getvalue().splitlines() == expected
