"""Standardizer at scale and across processes: files, chunked sources, dask, PyTorch and the command line."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from preflight import NotFittedError, Standardizer
from preflight.cli import main
from preflight.normalize import ConstantFeatureWarning

# Chunked and in-memory fits differ only by rounding (float64 sums of ~1e4 values): 1e-12 relative is ample.
RTOL = 1e-12


@pytest.fixture
def table() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((3000, 3)) * [1.0, 1e3, 1e-2] + [5.0, -1e6, 0.0]


def assert_same_statistics(a: Standardizer, b: Standardizer) -> None:
    np.testing.assert_allclose(a.mean_, b.mean_, rtol=RTOL)
    np.testing.assert_allclose(a.var_, b.var_, rtol=RTOL)
    assert a.n_samples_seen_ == b.n_samples_seen_


# ---------------------------------------------------------------------- persistence
def test_save_and_load_round_trip_bit_for_bit_and_partial_fit_goes_on(table: np.ndarray, tmp_path: Path) -> None:
    first = Standardizer(with_mean=False).fit(table[:1000])
    loaded = Standardizer.load(first.save(tmp_path / "stats.json"))
    assert loaded.get_params() == first.get_params()
    for name in ("mean_", "var_", "scale_"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(first, name))  # repr floats: exact
    loaded.partial_fit(table[1000:])
    assert_same_statistics(loaded, Standardizer().fit(table))


def test_a_constant_feature_warns_when_fitted_not_again_on_every_load(tmp_path: Path) -> None:
    x = np.column_stack([np.ones(5), np.arange(5.0)])
    with pytest.warns(ConstantFeatureWarning):
        path = Standardizer().fit(x).save(tmp_path / "s.json")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = Standardizer.load(path)
    assert loaded.scale_[0] == 1.0


def test_save_keeps_feature_names_and_is_plain_json(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"height": [1.5, 1.8, 1.7], "weight": [50.0, 90.0, 70.0]})
    path = Standardizer().fit(frame).save(tmp_path / "s.json")
    document = json.loads(path.read_text())
    assert document["schema_version"] == 1 and document["feature_names_in"] == ["height", "weight"]
    assert list(Standardizer.load(path).feature_names_in_) == ["height", "weight"]


def test_save_is_atomic_a_failed_write_leaves_the_old_file(
    table: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = Standardizer().fit(table).save(tmp_path / "stats.json")
    before = path.read_bytes()

    def crash(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        Standardizer().fit(table[:10]).save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["stats.json"]  # no temporary file left behind


def test_saving_before_fit_is_a_not_fitted_error(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError):
        Standardizer().save(tmp_path / "s.json")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda text: text[: len(text) // 2], "malformed or truncated JSON"),
        (lambda text: "", "malformed or truncated JSON"),
        (lambda text: text.replace('"schema_version": 1', '"schema_version": 2'), "schema_version 2.*reads version 1"),
        (lambda text: text.replace('"format": "preflight.Standardizer"', '"format": "other"'), "not a Standardizer"),
        (lambda text: "[1, 2]", "not a Standardizer"),
        (lambda text: text.replace('"count": [', '"count": [1,'), "'count' must be a list of 3 finite numbers"),
        (lambda text: text.replace('"copy": true', '"copy": "yes"'), "'params' must map"),
    ],
    ids=["truncated", "empty", "wrong-version", "wrong-format", "not-an-object", "wrong-length", "bad-param"],
)
def test_a_damaged_file_gives_a_clear_error(edit: object, match: str, table: np.ndarray, tmp_path: Path) -> None:
    path = Standardizer().fit(table).save(tmp_path / "stats.json")
    path.write_text(edit(path.read_text()))  # type: ignore[operator]
    with pytest.raises(ValueError, match=match):
        Standardizer.load(path)


# ---------------------------------------------------------------------- out of core
def test_fit_chunks_from_a_generator_equals_fit(table: np.ndarray) -> None:
    chunks = (table[i : i + 128] for i in range(0, len(table), 128))
    assert_same_statistics(Standardizer().fit_chunks(chunks), Standardizer().fit(table))
    with pytest.raises(ValueError, match="at least one chunk"):
        Standardizer().fit_chunks(iter([]))


def test_fit_file_from_a_memory_mapped_npy_equals_fit(table: np.ndarray, tmp_path: Path) -> None:
    labelled = np.column_stack([table, np.arange(len(table)) % 2])
    np.save(tmp_path / "train.npy", labelled)
    s = Standardizer().fit_file(tmp_path / "train.npy", label=-1, chunk_rows=500)
    assert_same_statistics(s, Standardizer().fit(table))
    memmap = np.load(tmp_path / "train.npy", mmap_mode="r")
    assert_same_statistics(Standardizer().fit(memmap[:, :3]), s)  # fit reads a memmap block by block too


def test_fit_file_from_a_csv_read_in_chunks_equals_fit(table: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    lines = ["p,q,label,r"] + [f"{a!r},{b!r},{i % 3},{c!r}" for i, (a, b, c) in enumerate(table.tolist())]
    path.write_text("\n".join(lines) + "\n")
    s = Standardizer().fit_file(path, label="label", chunk_rows=700)
    assert list(s.feature_names_in_) == ["p", "q", "r"]
    assert_same_statistics(s, Standardizer().fit(table))


def test_a_long_fit_shows_a_progress_bar(table: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tqdm")
    Standardizer().fit_chunks(np.array_split(table, 5), total_rows=len(table), progress=True)
    assert "3.00k/3.00k" in capsys.readouterr().err


def test_a_csv_with_text_in_a_feature_column_names_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(ValueError, match=r"column 'b' of bad.csv is not numeric \('oops' on line 3\)"):
        Standardizer().fit_file(path)


# ---------------------------------------------------------------------- dask on a cluster
@pytest.fixture(scope="module")
def dask_client():  # type: ignore[no-untyped-def]
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dask.dataframe")
    # processes=False: scheduler and worker talk over in-process queues, so no port is opened at all.
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.mark.slow
def test_dask_array_and_dataframe_on_a_local_cluster_equal_the_in_memory_fit(
    dask_client: object, table: np.ndarray
) -> None:
    import dask.array as da
    import dask.dataframe as dd
    import pandas as pd

    expected = Standardizer().fit(table)
    scheduler = dask_client.cluster.scheduler  # type: ignore[attr-defined]
    before = scheduler.transition_counter
    assert_same_statistics(Standardizer().fit(da.from_array(table, chunks=(700, 3))), expected)
    assert scheduler.transition_counter > before  # the reductions ran on the cluster
    frame = dd.from_pandas(pd.DataFrame(table, columns=["u", "v", "w"]), npartitions=4)
    s = Standardizer().fit(frame)
    assert_same_statistics(s, expected)
    assert list(s.feature_names_in_) == ["u", "v", "w"]
    broken = table.copy()
    broken[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity in feature\(s\) \['x1'\]"):
        Standardizer().fit(da.from_array(broken, chunks=(700, 3)))
    ignored = Standardizer(ignore_nan=True).fit(da.from_array(broken, chunks=(700, 3)))
    np.testing.assert_allclose(ignored.var_, np.nanvar(broken, axis=0), rtol=RTOL)


# ---------------------------------------------------------------------- PyTorch
@pytest.mark.slow  # importing torch takes seconds
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_to_torch_carries_the_statistics_as_buffers(table: np.ndarray, dtype_name: str) -> None:
    torch = pytest.importorskip("torch")
    dtype = getattr(torch, dtype_name)
    s = Standardizer().fit(table)
    module = s.to_torch(dtype=dtype)
    assert set(module.state_dict()) == {"mean", "scale"} and module.mean.dtype == dtype
    x = table[:50].astype(dtype_name)
    # torch divides where numpy multiplies by the reciprocal: both within a few ulps of the input dtype.
    tolerance = 8 * np.finfo(dtype_name).eps * (1 + np.abs(s.mean_) / s.scale_)
    out = module(torch.from_numpy(x)).numpy()
    assert np.all(np.abs(out - s.transform(x)) <= tolerance)
    twin = Standardizer().fit(table[:2]).to_torch(dtype=dtype)
    twin.load_state_dict(module.state_dict())  # a saved model brings its normalization with it
    torch.testing.assert_close(twin(torch.from_numpy(x)), module(torch.from_numpy(x)))


# ---------------------------------------------------------------------- command line
def test_cli_fit_then_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.csv").write_text("a,b,y\n1,100,0\n2,300,1\n3,200,0\n4,400,1\n")
    (tmp_path / "test.csv").write_text("y,b,a\n1,250,2.5\n0,100,1\n")
    stats, out = tmp_path / "stats.json", tmp_path / "test_normalized.csv"
    assert main(["normalize", "fit", str(tmp_path / "train.csv"), "--label", "y", "-o", str(stats), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["features"] == ["a", "b"] and report["mean"] == [2.5, 250.0]
    assert main(["normalize", "apply", str(stats), str(tmp_path / "test.csv"), "-o", str(out)]) == 0
    assert "wrote 2 rows" in capsys.readouterr().out
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert rows[0] == ["y", "b", "a"] and [r[0] for r in rows[1:]] == ["1", "0"]  # the label passes through
    np.testing.assert_allclose([float(v) for v in rows[1][1:]], [0.0, 0.0])
    np.testing.assert_allclose([float(v) for v in rows[2][1:]], [-150 / np.sqrt(12500), -1.5 / np.sqrt(1.25)])


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "train.csv").write_text("a,b\n1,2\n3,5\n")
    (tmp_path / "other.csv").write_text("a,c\n1,2\n")
    stats = tmp_path / "s.json"
    assert main(["normalize", "fit", str(tmp_path / "train.csv"), "-o", str(stats)]) == 0
    assert main(["normalize", "apply", str(stats), str(tmp_path / "other.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "lacks the fitted feature(s) ['b']" in capsys.readouterr().err
    stats.write_text("{")
    assert main(["normalize", "apply", str(stats), str(tmp_path / "train.csv"), "-o", str(tmp_path / "o.csv")]) == 2
    assert "malformed or truncated" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()
