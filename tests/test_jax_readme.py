"""The README's JAX quickstart runs and prints what the README says it prints."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from pathlib import Path

import pytest

pytest.importorskip("jax")

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.jax


def test_the_jax_quickstart_prints_what_the_readme_says() -> None:
    section = README.read_text(encoding="utf-8").split("\n## JAX\n", 1)[1].split("\n## ", 1)[0]
    code, after = re.search(r"```python\n(.*?)```\n\n(.*?)(?=\n\n)", section, re.S).groups()
    claim = after.replace("\n", " ").split("prints ", 1)[1].split(" (", 1)[0]
    expected = re.findall(r"`([^`]+)`", claim)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
    assert out.getvalue().splitlines() == expected
