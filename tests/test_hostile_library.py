"""The library under hostile input (issue #13): wrong numbers refused by name, parameters restored bit for bit,
messages that blame the right argument and stay readable."""

from __future__ import annotations

import json
import os
import stat
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import numpy as np
import pytest

from preflight import gradcheck
from preflight.check.perturb import BlackBoxLoss
from preflight.experiments import numdiff
from preflight.nn import Network
from preflight.normalize import Standardizer
from preflight.normalize.standardizer import ConstantFeatureWarning

torch = pytest.importorskip("torch")  # for the adapter's cases; the rest would run without it, torch is installed
from preflight.torch import check_function, check_module  # noqa: E402


# ---------------------------------------------------------------------- 9. float16
def test_float16_is_standardized_in_float32_and_rounded_once() -> None:
    X = np.float16([[60000], [65000], [-65504]])
    z = Standardizer().fit(X).transform(X)
    x64 = X.astype(np.float64)
    exact = (x64 - x64.mean()) / x64.std()
    assert z.dtype == np.float16 and np.isfinite(z).all()  # was -inf: 60000 - mean overflowed float16
    # One rounding into float16 (11 significant bits) errs by at most 2**-11 relatively; the float32 work before it
    # adds ~1e-7: well inside 2**-10.
    assert np.allclose(z, exact, rtol=2**-10, atol=0)


def test_float16_in_place_stays_in_place() -> None:
    X = np.float16([[60000.0, 1.0], [65000.0, 2.0], [-65504.0, 4.0]])
    s = Standardizer(copy=False).fit(X)
    out = s.transform(X)
    assert out is X and np.isfinite(X).all() and abs(float(X[2, 0]) + 1.4134) < 2e-3


# ---------------------------------------------------------------------- 10. to_torch dtypes
def test_to_torch_refuses_a_dtype_that_would_truncate_the_statistics() -> None:
    s = Standardizer().fit(np.array([[1.0], [2.0], [5.0]]))
    for dtype in (torch.int64, torch.bool, torch.complex64, "float32"):
        with pytest.raises(ValueError, match="dtype: expected a floating torch dtype"):
            s.to_torch(dtype=dtype)
    layer = s.to_torch(dtype=torch.float64)
    # torch divides by the scale, NumPy multiplies by its reciprocal: a rounding or two apart (1e-15 relative).
    expected = float(s.transform(np.array([[1.0]]))[0, 0])
    assert float(layer(torch.tensor([[1.0]], dtype=torch.float64))) == pytest.approx(expected, rel=1e-15)


# ---------------------------------------------------------------------- 11. complex values, fractional masks
def test_a_complex_dask_array_is_refused_as_numpy_input_is() -> None:
    da = pytest.importorskip("dask.array")
    X = np.array([[1 + 1j], [2 + 5j]])
    with pytest.raises(ValueError, match="expected real numbers"):
        Standardizer().fit(da.from_array(X))
    with pytest.raises(ValueError, match="Complex data not supported"):
        Standardizer().fit(X)


def test_a_complex_gradient_is_refused_not_cast_to_real() -> None:
    w = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match=r"grads\['w'\]: expected a real gradient.*complex128"):
        gradcheck(lambda p: float(np.sum(p["w"] ** 2)), {"w": w}, {"w": 2 * w + 1j})


def test_a_fractional_dropout_mask_is_refused_and_a_0_1_mask_is_a_boolean_one() -> None:
    net = Network([2, 3, 1], hidden="tanh", output="sigmoid", keep_prob=0.5)
    params = net.init(np.random.default_rng(0), "glorot")
    X, y = np.ones((3, 2)), np.array([0, 1, 1])
    with pytest.raises(ValueError, match=r"masks\[0\]: expected a boolean keep-mask .*got the value 0.5"):
        net.cost(params, X, y, masks=(np.full((3, 3), 0.5),))
    keep = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]])
    assert net.cost(params, X, y, masks=(keep.astype(float),)) == net.cost(params, X, y, masks=(keep == 1,))


# ---------------------------------------------------------------------- 12. statistics files
def saved(tmp_path: Path, **fields: Any) -> Path:
    """A saved Standardizer file, with ``fields`` of its JSON replaced."""
    path = Standardizer().fit(np.array([[1.0, 10.0], [3.0, 30.0], [4.0, 20.0]])).save(tmp_path / "s.json")
    document = json.loads(path.read_text())
    document.update(fields)
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"shift": [1e308, 1.0], "offset": [1e308, 1.0]}, "overflow float64"),
        ({"count": [1e19, 1e19]}, "'count' must be whole numbers from 0 to 2\\*\\*53"),
        ({"schema_version": True}, "schema_version True"),
        ({"schema_version": 1.0}, "schema_version 1.0"),
        ({"scale": [float("nan"), 1.0]}, "'scale' must be a list of 2 finite numbers"),
        ({"scale": [-1.247219128924647, 8.16496580927726]}, "'scale' must be positive"),
        ({"mean": [2.0, 20.0]}, "stored 'mean' of feature 0 .* disagrees"),
        ({"var": [1.5, 66.66666666666667]}, "stored 'var' of feature 0"),
        ({"scale": [1.0, 8.16496580927726]}, "stored 'scale' of feature 0"),
        ({"label_column": 3}, "'label_column' must be null or a column position from 0 to 2"),
    ],
    ids=[
        "overflow",
        "count",
        "version-true",
        "version-float",
        "nan-scale",
        "negative-scale",
        "mean",
        "var",
        "scale",
        "label",
    ],
)
def test_load_validates_every_field(tmp_path: Path, fields: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Standardizer.load(saved(tmp_path, **fields))


def test_load_accepts_what_save_wrote_and_names_the_file_when_it_cannot_parse_it(tmp_path: Path) -> None:
    loaded = Standardizer.load(saved(tmp_path))
    assert loaded.mean_.tolist() == pytest.approx([8 / 3, 20.0])
    (tmp_path / "deep.json").write_text("[" * 100_000)
    with pytest.raises(ValueError, match=r"deep\.json is not a Standardizer file"):
        Standardizer.load(tmp_path / "deep.json")
    (tmp_path / "digits.json").write_text('{"format": "preflight.Standardizer", "n": ' + "9" * 5000 + "}")
    with pytest.raises(ValueError, match=r"digits\.json is not a Standardizer file"):
        Standardizer.load(tmp_path / "digits.json")
    with pytest.raises(ValueError, match="is a folder"):
        Standardizer.load(tmp_path)


def test_standardizer_save_writes_through_a_symlink_and_into_a_fifo_keeping_the_mode(tmp_path: Path) -> None:
    # Links and FIFOs made here, never the system's /dev nodes.
    s = Standardizer().fit(np.array([[1.0], [3.0]]))
    real = tmp_path / "real.json"
    real.write_text("{}")
    real.chmod(0o600)
    (tmp_path / "link.json").symlink_to(real)
    s.save(tmp_path / "link.json")
    assert (tmp_path / "link.json").is_symlink() and Standardizer.load(real).mean_.tolist() == [2.0]
    assert real.stat().st_mode & 0o777 == 0o600
    fifo = tmp_path / "stats.pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        s.save(fifo)
        assert json.loads(os.read(reader, 1 << 16))["mean"] == [2.0]
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(fifo.stat().st_mode)


# ---------------------------------------------------------------------- 13. the move and the restore
def interrupt_at_line(code: CodeType, k: int) -> Callable[..., Any]:
    """A tracer raising KeyboardInterrupt at the k-th line event of ``code`` (as a Ctrl-C landing there would)."""
    seen = [0]

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            seen[0] += 1
            if seen[0] == k:
                raise KeyboardInterrupt
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code is code else None

    return tracer


def test_an_interrupt_at_any_line_of_the_perturbation_loop_leaves_the_parameters_bit_identical() -> None:
    # The issue: 2 of 3,000 random Ctrl-C timers landed between "write the moved value" and the try of its restore.
    # Here the interrupt lands at every line event of the loop in turn, a C-contiguous and a strided array.
    for layout in ("contiguous", "strided"):
        k = 1
        while True:
            base = np.linspace(-1.0, 1.0, 12).reshape(3, 4) + 0.1
            w = base if layout == "contiguous" else base[:, ::2]
            before = w.copy()
            loss = BlackBoxLoss(lambda p: float(np.sum(p["w"] ** 3)), {"w": w}, {"w": w})
            loss.unperturbed = 0.0
            tracer = interrupt_at_line(BlackBoxLoss.range_losses.__code__, k)  # the loop of moves and restores
            sys.settrace(tracer)
            try:
                loss({"w": np.full(w.shape, 1e-3)})
                interrupted = False
            except KeyboardInterrupt:
                interrupted = True
            finally:
                sys.settrace(None)
            assert np.array_equal(w.view(np.int64), before.view(np.int64)), (layout, k, w - before)
            if not interrupted:
                break
            k += 1
        assert k > 20, "the loop ran through fewer line events than a move and a restore take"


# ---------------------------------------------------------------------- 14. messages that blame the right thing
TORCH_CASES = {
    "nan-loss": (lambda m, x, t, mse: check_module(m, lambda o, t: mse(o, t) * float("nan"), (x, t)), "loss: .* nan"),
    "detached": (lambda m, x, t, mse: check_module(m, lambda o, t: mse(o, t).detach(), (x, t)), "loss_fn: .* not conn"),
    "meta-batch": (lambda m, x, t, mse: check_module(m, mse, (x.to("meta"), t)), "batch: expected CPU tensors .* meta"),
    "string": (lambda m, x, t, mse: check_module(m, mse, (x, t), parameters="weight"), r"pass \['weight'\]"),
    "meta-input": (lambda m, x, t, mse: check_function(torch.tanh, x.to("meta")), r"inputs\[0\]: .*on meta"),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_the_torch_adapter_blames_the_loss_the_batch_and_the_argument(case: str) -> None:
    # Were: grads['weight'] blamed for a NaN loss, torch's raw RuntimeError or TypeError, the string's characters
    # listed as unknown parameters, "max(): Expected reduction dim".
    model = torch.nn.Linear(3, 2).double()
    x, t = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    call, match = TORCH_CASES[case]
    with pytest.raises(ValueError, match=match):
        call(model, x, t, torch.nn.functional.mse_loss)


def test_an_empty_input_beside_a_full_one_is_reported_as_nothing_to_check_not_a_raw_torch_error() -> None:
    # Was: torch's raw "max(): Expected reduction dim". Now the empty input is named and the other one checked.
    x = torch.randn(4, 3, dtype=torch.float64)
    report = check_function(lambda a, b: torch.cat([a, b]), x[:0], x)
    assert report.passed and report.parameters["input1"].checked > 0
    assert report.parameters["input0"].size == 0 and report.parameters["input0"].checked == 0


def test_network_arguments_name_themselves() -> None:
    with pytest.raises(ValueError, match=r"hidden: expected an activation name .* got None"):
        Network([2, 3, 1], hidden=None)  # type: ignore[arg-type]
    net = Network([2, 3, 2], hidden="tanh", output="softmax")
    params = net.init(np.random.default_rng(0), "glorot")
    with pytest.raises(ValueError, match="y: expected real labels, got dtype complex128"):
        net.cost(params, np.ones((3, 2)), np.array([0, 1, 1], dtype=complex))


# ---------------------------------------------------------------------- 15. output size and time bounds
def test_a_warning_about_many_constant_columns_lists_twenty_and_counts_the_rest() -> None:
    X = np.ones((3, 100_000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Standardizer().fit(X)
    (warning,) = [w for w in caught if issubclass(w.category, ConstantFeatureWarning)]
    text = str(warning.message)
    assert "'x19'] and 99,980 more (100,000 in all)" in text and len(text) < 600


def test_numdiff_refuses_more_points_than_it_can_run_quickly() -> None:
    with pytest.raises(ValueError, match="points: expected an integer from 4 to 1000, got 100000"):
        numdiff.run(points=100_000)


def test_no_stderr_at_all_is_no_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A program started with descriptor 2 closed (or pythonw) has sys.stderr None: the progress rule asked it
    # whether it was a terminal, an AttributeError.
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,5\n")
    monkeypatch.setattr(sys, "stderr", None)
    assert Standardizer().fit_file(tmp_path / "t.csv").mean_.tolist() == [2.0, 3.5]
    w = np.array([1.0, 2.0])
    assert gradcheck(lambda p: float(np.sum(p["w"] ** 2)), {"w": w}, {"w": 2 * w}).passed
