"""The documentation site builds in strict mode: a broken link, a missing page or an unreadable docstring fails.

``make docs`` (and ``make test``) build it the same way; this test runs the build where MkDocs is installed (extra
``dev``) so that a docstring change that breaks the API reference fails in the test suite too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    argv = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    page = (tmp_path / "site" / "reference" / "check" / "index.html").read_text()
    assert 'id="preflight.check.gradcheck"' in page  # the API reference is generated, not an empty page


def test_every_page_is_in_the_navigation() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(ROOT / "docs")) for p in (ROOT / "docs").rglob("*.md")}
    assert {p for p in pages if p not in config} == set()


def test_the_readmes_links_resolve_on_github() -> None:
    """The README is not part of the site (MkDocs does not check it): its relative links must name files that exist."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t.split("#", 1)[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t]
    assert any(t.startswith("docs/") for t in targets)  # the README points into the docs, where its sections went
    assert [t for t in targets if not (ROOT / t).exists()] == []
