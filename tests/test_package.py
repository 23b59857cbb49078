"""Packaging: the core imports with NumPy alone; optional parts name their extra."""

from __future__ import annotations

import subprocess
import sys
import textwrap

OPTIONAL = [
    "sklearn",
    "matplotlib",
    "scipy",
    "torch",
    "jax",
    "flax",
    "equinox",
    "dask",
    "distributed",
    "pandas",
    "tqdm",
]


def run_without_optional(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where every optional dependency fails to import."""
    blocker = textwrap.dedent(
        f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {OPTIONAL!r}:
                    raise ImportError(f"blocked for this test: {{name}}")
        sys.meta_path.insert(0, Block())
        """
    )
    return subprocess.run([sys.executable, "-c", blocker + code, *args], capture_output=True, text=True, timeout=120)


def test_the_core_imports_with_numpy_alone() -> None:
    code = "import preflight, pkgutil, importlib\n"
    code += "import preflight.nn, preflight.init, preflight.data, preflight.cli\n"
    code += "print(sorted(preflight.__all__))"
    result = run_without_optional(code)
    assert result.returncode == 0, result.stderr
    assert "Network" in result.stdout


def test_an_optional_part_without_its_extra_names_the_extra() -> None:
    result = run_without_optional("import preflight.data as d\nd.digits()")
    assert result.returncode != 0
    assert "pip install 'nn-preflight[data]'" in result.stderr


def test_the_cli_reports_a_missing_extra_in_one_line(tmp_path) -> None:
    result = run_without_optional(
        "import sys; from preflight.cli import main; sys.exit(main(['tour', '--quick', '-o', sys.argv[1]]))",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nn-preflight[data]" in result.stderr


def test_preflight_jax_without_jax_names_the_extra() -> None:
    result = run_without_optional("import preflight.jax")
    assert result.returncode != 0
    assert "pip install 'nn-preflight[jax]'" in result.stderr


def test_dir_lists_the_public_names_and_no_leftovers() -> None:
    import preflight

    public = {name for name in dir(preflight) if not name.startswith("_")}
    assert set(preflight.__all__) - {"__version__"} <= public and "annotations" not in public
    assert public - set(preflight.__all__) <= {
        "experiments",
        "report",
        "torch",
        "jax",
        "lightning",
        "tour",
        "cli",
    }  # submodules once imported
