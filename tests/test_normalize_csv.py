"""Tables on disk for ``Standardizer.fit_file`` and ``preflight normalize fit|apply``: what a CSV or .npy file may
hold, what passes through untouched, and how bad files are refused (one line naming the file, exit code 2)."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from preflight import Standardizer
from preflight.cli import main
from preflight.normalize import ConstantFeatureWarning
from preflight.normalize.sources import NamedRows, load_state

# Statistics of a file vs of the same numbers in memory: float64 sums of a handful of values, 1e-12 relative is ample.
RTOL = 1e-12


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    """Run the command line; return the exit code and stderr (which must be one line when it failed)."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    if code != 0:
        assert err.count("\n") == 1 and "Traceback" not in err, err
    return code, err


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


# ---------------------------------------------------------------------- column names
def test_duplicate_column_names_are_refused_by_fit_and_apply_naming_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dup = write(tmp_path / "dup.csv", "a,a,y\n1,10,0\n3,30,1\n5,50,0\n")
    with pytest.raises(ValueError, match=r"dup.csv has duplicate column names \['a'\]"):
        Standardizer().fit_file(dup, label="y")
    code, err = run(capsys, "normalize", "fit", dup, "--label", "y", "-o", tmp_path / "s.json")
    assert code == 2 and "duplicate column names ['a']" in err and not (tmp_path / "s.json").exists()
    stats = tmp_path / "good.json"
    run(capsys, "normalize", "fit", write(tmp_path / "good.csv", "a,y\n1,0\n3,1\n"), "--label", "y", "-o", stats)
    code, err = run(capsys, "normalize", "apply", stats, dup, "-o", tmp_path / "out.csv")
    assert code == 2 and "duplicate column names ['a']" in err and not (tmp_path / "out.csv").exists()


def test_a_byte_order_mark_is_not_part_of_the_first_column_name(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b\n1,2\n3,5\n")
    assert Standardizer().fit_file(path).feature_names_in_.tolist() == ["a", "b"]


def test_a_csv_that_is_not_utf8_is_one_line_naming_the_file_the_byte_and_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("a,b\n1,2\n3,4\n5,caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.csv is not UTF-8 text \(byte 0xe9 on line 4\); save it as UTF-8"):
        Standardizer().fit_file(path)
    code, err = run(capsys, "normalize", "fit", path, "-o", tmp_path / "s.json")
    assert code == 2 and "latin1.csv is not UTF-8" in err


# ---------------------------------------------------------------------- what passes through
def test_apply_passes_columns_that_are_not_features_through_as_the_text_they_were(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Text that a number parser would change or reject: leading zeros and spaces, a comma, a quote, a newline.
    text = 'id,a,b,y\n 007 ,1,2,cat\n"Zo\u00eb, ""Jr.""",3,5,dog\n"two\nlines",5,9,cat\n'
    path = write(tmp_path / "s.csv", text)
    stats, out = tmp_path / "s.json", tmp_path / "o.csv"
    s = Standardizer().fit_file(write(tmp_path / "train.csv", "a,b,y\n1,2,cat\n3,5,dog\n5,9,cat\n"), label="y")
    assert run(capsys, "normalize", "fit", tmp_path / "train.csv", "--label", "y", "-o", stats)[0] == 0
    assert run(capsys, "normalize", "apply", stats, path, "-o", out)[0] == 0
    rows, original = read_csv(out), read_csv(path)
    assert rows[0] == original[0]
    assert [[r[0], r[3]] for r in rows[1:]] == [[r[0], r[3]] for r in original[1:]]
    features = NamedRows(np.array([[float(r[1]), float(r[2])] for r in original[1:]]), ["a", "b"])
    np.testing.assert_array_equal([[float(r[1]), float(r[2])] for r in rows[1:]], s.transform(features))  # repr: exact


def test_apply_still_refuses_text_in_a_fitted_feature_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = tmp_path / "s.json"
    run(capsys, "normalize", "fit", write(tmp_path / "t.csv", "a,b\n1,2\n3,5\n"), "-o", stats)
    code, err = run(
        capsys, "normalize", "apply", stats, write(tmp_path / "u.csv", "a,b\n1,x\n"), "-o", tmp_path / "o.csv"
    )
    assert code == 2 and "column 'b' of u.csv is not numeric ('x' on line 2)" in err


def test_an_empty_field_is_nan_however_short_the_other_values_of_its_column(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "m.csv", "a,b,y\n1,,0\n3,5,1\n5,9,0\n")
    s = Standardizer(ignore_nan=True).fit_file(path, label="y")
    np.testing.assert_array_equal(s.n_samples_seen_, [3, 2])
    np.testing.assert_allclose(s.mean_, [3.0, 7.0], rtol=RTOL)
    with pytest.raises(ValueError, match=r"NaN or infinity in feature\(s\) \['b'\]"):
        Standardizer().fit_file(path, label="y")
    stats, out = tmp_path / "m.json", tmp_path / "o.csv"
    assert run(capsys, "normalize", "fit", path, "--label", "y", "--ignore-nan", "-o", stats)[0] == 0
    assert run(capsys, "normalize", "apply", stats, path, "-o", out)[0] == 0
    assert read_csv(out)[1][1] == "nan"  # ignore_nan passes the missing value through


# ---------------------------------------------------------------------- blank lines and line numbers
def test_blank_lines_are_skipped_by_fit_and_apply_and_left_out_of_the_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "blank.csv", "id,a,b,y\n1,1,2,0\n\n2,3,5,1\n\n\n3,5,9,0\n\n")
    stats, out = tmp_path / "s.json", tmp_path / "o.csv"
    for chunk_rows in (1, 2, 100):
        s = Standardizer().fit_file(path, label="y", chunk_rows=chunk_rows)
        np.testing.assert_allclose(s.mean_, [2.0, 3.0, 16 / 3], rtol=RTOL)
        assert s.n_samples_seen_ == 3
    assert run(capsys, "normalize", "fit", path, "--label", "y", "-o", stats)[0] == 0
    assert run(capsys, "normalize", "apply", stats, path, "-o", out, "--chunk-rows", "2")[0] == 0
    rows = read_csv(out)
    assert len(rows) == 4 and all(rows) and [r[3] for r in rows] == ["y", "0", "1", "0"]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,b\n1,2\n\n\n3,4\nzz,5\n", r"column 'a' of t.csv is not numeric \('zz' on line 6\)"),
        ('a,b\n1,"2"\n"3",4\n\n5,6,7\n', r"t.csv line 5 has 3 field\(s\); the header has 2"),
        # A quoted field over two lines is one record, on the line where it starts.
        ('y,a\n"x\ny",1\nz,oops\n', r"column 'a' of t.csv is not numeric \('oops' on line 4\)"),
    ],
    ids=["after-blank-lines", "wrong-width", "after-a-two-line-record"],
)
def test_errors_give_the_files_own_line_numbers(text: str, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        Standardizer().fit_file(write(tmp_path / "t.csv", text), label="y" if text.startswith("y") else None)


# ---------------------------------------------------------------------- empty tables
@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("header.csv", "a,b\n", "header.csv has no data rows"),
        ("blank.csv", "a,b\n\n\n", "blank.csv has no data rows"),
        ("empty.npy", np.zeros((0, 2)), r"empty.npy has no data rows \(shape \(0, 2\)\)"),
    ],
)
def test_a_table_without_data_rows_is_refused_naming_the_file(
    name: str, content: str | np.ndarray, match: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    write(path, content) if isinstance(content, str) else np.save(path, content)
    with pytest.raises(ValueError, match=match):
        Standardizer().fit_file(path)
    stats = Standardizer().fit(np.array([[1.0, 2.0], [3.0, 5.0]])).save(tmp_path / "s.json")
    code, err = run(capsys, "normalize", "apply", stats, path, "-o", tmp_path / f"out{path.suffix}")
    assert code == 2 and "has no data rows" in err and not (tmp_path / f"out{path.suffix}").exists()


@pytest.mark.parametrize(
    ("name", "content", "label", "match"),
    [
        ("one.csv", "y\n1\n2\n", "y", r"one.csv has no column besides the label 'y'"),
        ("one.npy", np.ones((3, 1)), 0, r"one.npy has no column besides the label '0'"),
        ("none.npy", np.ones((3, 0)), None, r"none.npy has no columns"),
    ],
)
def test_a_table_without_feature_columns_is_refused_naming_the_file(
    name: str, content: str | np.ndarray, label: str | int | None, match: str, tmp_path: Path
) -> None:
    path = tmp_path / name
    write(path, content) if isinstance(content, str) else np.save(path, content)
    with pytest.raises(ValueError, match=match):
        Standardizer().fit_file(path, label=label)


def test_named_rows_without_columns_are_refused_like_an_array_without_columns() -> None:
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        Standardizer().fit(np.ones((3, 0)))
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        Standardizer().fit(NamedRows(np.ones((3, 0)), []))


# ---------------------------------------------------------------------- the label of a .npy table
def test_npy_statistics_record_the_label_and_apply_refuses_a_label_that_contradicts_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x = np.random.default_rng(0).standard_normal((6, 3))
    x[:, 1] = [0, 1, 0, 1, 1, 0]
    np.save(tmp_path / "t.npy", x)
    stats, out = tmp_path / "s.json", tmp_path / "o.npy"
    assert run(capsys, "normalize", "fit", tmp_path / "t.npy", "--label", "1", "-o", stats)[0] == 0
    assert json.loads(stats.read_text())["label_column"] == 1
    expected = Standardizer().fit(x[:, [0, 2]]).transform(x[:, [0, 2]])
    for same in ([], ["--label", "1"], ["--label", "-2"]):
        assert run(capsys, "normalize", "apply", stats, tmp_path / "t.npy", "-o", out, *same)[0] == 0
        np.testing.assert_array_equal(np.load(out)[:, [0, 2]], expected)
        np.testing.assert_array_equal(np.load(out)[:, 1], x[:, 1])  # the label passes through
    code, err = run(capsys, "normalize", "apply", stats, tmp_path / "t.npy", "-o", tmp_path / "bad.npy", "--label", "0")
    assert code == 2 and "fitted with the label in column 1; got '0' (column 0)" in err
    assert not (tmp_path / "bad.npy").exists()


def test_apply_refuses_a_table_whose_columns_do_not_match_the_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "xy.npy", np.arange(12.0).reshape(4, 3))
    np.save(tmp_path / "x.npy", np.arange(8.0).reshape(4, 2))
    with_label, without = tmp_path / "with.json", tmp_path / "without.json"
    run(capsys, "normalize", "fit", tmp_path / "xy.npy", "--label", "2", "-o", with_label)
    run(capsys, "normalize", "fit", tmp_path / "x.npy", "-o", without)
    code, err = run(capsys, "normalize", "apply", with_label, tmp_path / "x.npy", "-o", tmp_path / "o.npy")
    assert code == 2 and "x.npy has 2 columns; the statistics were fitted with the label in column 2" in err
    code, err = run(capsys, "normalize", "apply", without, tmp_path / "xy.npy", "-o", tmp_path / "o.npy")
    assert code == 2 and "xy.npy has 3 column(s); the statistics are for 2 feature(s) (pass label" in err


def test_a_csv_label_must_be_a_column_that_is_not_a_fitted_feature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "t.csv", "a,b,y\n1,2,0\n3,5,1\n")
    stats = tmp_path / "s.json"
    run(capsys, "normalize", "fit", path, "--label", "y", "-o", stats)
    code, err = run(capsys, "normalize", "apply", stats, path, "-o", tmp_path / "o.csv", "--label", "a")
    assert code == 2 and "label: 'a' is the fitted feature 'a'" in err
    code, err = run(capsys, "normalize", "apply", stats, path, "-o", tmp_path / "o.csv", "--label", "z")
    assert code == 2 and "label: expected one of the columns ['a', 'b', 'y']" in err
    assert run(capsys, "normalize", "apply", stats, path, "-o", tmp_path / "o.csv", "--label", "y")[0] == 0


@pytest.mark.parametrize("value", [-1, "1", True, 1.5])
def test_a_saved_label_column_that_is_not_a_position_is_refused(value: object, tmp_path: Path) -> None:
    path = Standardizer().fit(np.array([[1.0], [3.0]])).save(tmp_path / "s.json")
    document = json.loads(path.read_text())
    document["label_column"] = value
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="'label_column' must be null or a column position"):
        load_state(path)


def test_statistics_saved_by_the_library_record_no_label(tmp_path: Path) -> None:
    path = Standardizer().fit(np.array([[1.0], [3.0]])).save(tmp_path / "s.json")
    assert "label_column" not in json.loads(path.read_text()) and load_state(path).label_column is None


# ---------------------------------------------------------------------- constant features
def test_fit_file_warns_about_constant_features_of_the_whole_table_not_of_a_chunk(tmp_path: Path) -> None:
    path = write(tmp_path / "c.csv", "a,b\n1,0\n2,0\n3,5\n4,7\n")  # b is constant in the first chunk of 2 rows only
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantFeatureWarning)
        Standardizer().fit_file(path, chunk_rows=2)
        Standardizer().fit_chunks([np.array([[1.0, 0.0], [2.0, 0.0]]), np.array([[3.0, 5.0], [4.0, 7.0]])])
    constant = write(tmp_path / "k.csv", "a,b\n1,0\n2,0\n3,0\n4,0\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Standardizer().fit_file(constant, chunk_rows=1)
    assert [str(w.message).split(" are ")[0] for w in caught] == ["Standardizer: feature(s) ['b']"]  # once


def test_partial_fit_by_hand_warns_about_the_statistics_so_far(tmp_path: Path) -> None:
    s = Standardizer()
    with pytest.warns(ConstantFeatureWarning, match=r"\['x1'\]"):
        s.partial_fit(np.array([[1.0, 0.0], [2.0, 0.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantFeatureWarning)
        s.partial_fit(np.array([[3.0, 5.0], [4.0, 7.0]]))


def test_cli_fit_with_small_chunks_prints_no_constant_feature_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "c.csv", "a,b\n1,0\n2,0\n3,5\n4,7\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConstantFeatureWarning)
        assert run(capsys, "normalize", "fit", path, "--chunk-rows", "2", "-o", tmp_path / "c.json")[0] == 0


def test_a_record_the_csv_module_cannot_read_is_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "huge.csv", "a,b\n1,2\n3," + "9" * 200_000 + "\n")  # over csv's field size limit
    code, err = run(capsys, "normalize", "fit", path, "-o", tmp_path / "s.json")
    assert code == 2 and "huge.csv line 3 is not valid CSV (field larger than field limit" in err
