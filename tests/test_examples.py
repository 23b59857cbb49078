"""The notebooks in examples/ run from top to bottom in a fresh Jupyter kernel, and show what they say they show.

Each notebook is executed with nbclient (as Jupyter would run it) against this checkout's ``src``. A cell tagged
``renders-html`` must display rich HTML (a result object's ``_repr_html_``), not only its text; the notebooks'
own ``assert`` lines hold the lessons. Outputs are never stored in git: a notebook saved with outputs fails here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
#: Cells showing a gradient-check report, whose HTML view is added with GradcheckReport's (issue #15, the lead).
GRADCHECK_TAG = "renders-html-gradcheck"


def test_there_are_four_notebooks() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_is_stored_without_outputs(path: Path) -> None:
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in cells)


def _html_outputs(cell: dict) -> list[str]:
    return [o["data"]["text/html"] for o in cell["outputs"] if "text/html" in o.get("data", {})]


def _gradcheck_has_html() -> bool:
    from preflight.check.report import GradcheckReport

    return hasattr(GradcheckReport, "_repr_html_")


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_notebook_runs_and_renders(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if "torch" in path.stem:
        pytest.importorskip("torch")
    if any(word in path.read_text() for word in ("data.digits", "experiments")):
        pytest.importorskip("sklearn")
    # The kernel imports preflight from this checkout, runs in a scratch folder, and draws off-screen.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, when a cell fails or an assert does not hold
    tagged = [(c, c.metadata.get("tags", [])) for c in notebook.cells if c.cell_type == "code"]
    html_cells = [c for c, tags in tagged if "renders-html" in tags]
    if _gradcheck_has_html():
        html_cells += [c for c, tags in tagged if GRADCHECK_TAG in tags]
    for cell in html_cells:
        pages = _html_outputs(cell)
        assert pages and all(p.lstrip().startswith("<div") for p in pages), cell.source[-200:]
    errors = [o for c, _ in tagged for o in c.outputs if o.output_type == "error"]
    assert errors == []
