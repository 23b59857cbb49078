"""Every warning preflight issues points at the caller's line, not at a line inside preflight.

One registry of calls that warn, one test: ``warnings`` shows the file and line it is attributed to, and a warning
blamed on ``normalize.py:334`` tells the user nothing about which of their calls to fix.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pytest

from preflight import Standardizer
from preflight.init import lsuv
from preflight.nn import Network
from preflight.nn.bugs import BuggyNetwork
from preflight.nn.callbacks import GradcheckCallback
from preflight.propagation import analyze

CONSTANT = np.column_stack([np.ones(6), np.arange(6.0)])


def _partial_fit() -> None:
    Standardizer().partial_fit(CONSTANT)


def _fit_chunks() -> None:
    Standardizer().fit_chunks([CONSTANT[:3], CONSTANT[3:]])


def _feature_names() -> None:
    pd = pytest.importorskip("pandas")
    Standardizer().fit(pd.DataFrame(CONSTANT[:, 1:], columns=["a"])).transform(CONSTANT[:, 1:])


def _propagation() -> None:
    rng = np.random.default_rng(0)
    net = Network([64] * 16 + [4], hidden="relu", output="softmax")
    analyze(net, net.init(1, "lecun"), rng.standard_normal((64, 64)), rng.integers(0, 4, 64))


def _lsuv() -> None:
    lsuv(Network([4, 8, 2], hidden="relu", output="softmax"), np.zeros((10, 4)), 0)


def _callback() -> None:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    net = BuggyNetwork([3, 6, 4, 1], hidden="tanh", output="sigmoid", bug="factor-2")
    net.fit(net.init(0, "glorot"), X, y, learning_rate=0.1, iterations=1, callbacks=[GradcheckCallback(net, X, y)])


def _torch_lsuv() -> None:
    torch = pytest.importorskip("torch")
    from preflight.torch import initialize

    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    initialize(model, "lsuv", batch=torch.zeros(64, 4))


def _torch_propagation() -> None:
    torch = pytest.importorskip("torch")
    from preflight.torch import propagation

    layers = [m for _ in range(10) for m in (torch.nn.Linear(32, 32), torch.nn.Tanh())]
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for m in model:
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, 1.0)
    propagation(model, torch.randn(128, 32))


WARNING_CALLS: dict[str, Callable[[], None]] = {
    "Standardizer.fit, constant feature": lambda: Standardizer().fit(CONSTANT),
    "Standardizer.partial_fit, constant feature": _partial_fit,
    "Standardizer.fit_chunks, constant feature": _fit_chunks,
    "Standardizer.transform, feature names": _feature_names,
    "propagation.analyze": _propagation,
    "lsuv, constant batch": _lsuv,
    "GradcheckCallback in Network.fit": _callback,
    "preflight.torch.initialize, LSUV": _torch_lsuv,
    "preflight.torch.propagation": _torch_propagation,
}


@pytest.mark.parametrize("call", WARNING_CALLS.values(), ids=WARNING_CALLS.keys())
def test_warnings_point_at_the_callers_line(call: Callable[[], None]) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    assert caught, "the call was expected to warn"
    assert {w.filename for w in caught} == {__file__}, [(w.filename, w.lineno, str(w.message)) for w in caught]


def test_a_warning_of_ours_leaking_out_of_a_test_fails_it(tmp_path) -> None:
    """pyproject.toml turns a PreflightWarning that no test catches into an error (third-party ones stay warnings)."""
    import subprocess
    import sys
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    (tmp_path / "test_leak.py").write_text(
        "import warnings\nimport numpy as np\nfrom preflight import Standardizer\n\n"
        "def test_leaks():\n    Standardizer().fit(np.ones((3, 2)))\n\n"
        "def test_catches():\n    with warnings.catch_warnings():\n        warnings.simplefilter('ignore')\n"
        "        Standardizer().fit(np.ones((3, 2)))\n\n"
        "def test_third_party():\n    warnings.warn('not ours', DeprecationWarning)\n"
    )
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(pyproject), "test_leak.py"]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 1, result.stdout[-2000:]
    assert "1 failed, 2 passed" in result.stdout and "ConstantFeatureWarning" in result.stdout
