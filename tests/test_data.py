"""Data sets: generated, bundled, the course's, and a user's files."""

from __future__ import annotations

import numpy as np
import pytest

from preflight import data


@pytest.mark.parametrize("make", [data.circles, data.moons])
def test_generated_sets_are_seeded_balanced_and_shaped_as_rows(make) -> None:
    X, y = make(101, seed=3)
    X2, y2 = make(101, seed=3)
    assert X.shape == (101, 2) and y.shape == (101,)
    assert np.array_equal(X, X2) and np.array_equal(y, y2)
    assert abs(int(y.sum()) - 50) <= 1
    assert not np.array_equal(make(101, seed=4)[0], X)


def test_circles_without_noise_lie_on_the_two_radii() -> None:
    X, y = data.circles(40, noise=0.0, factor=0.5, seed=0)
    radius = np.hypot(X[:, 0], X[:, 1])
    np.testing.assert_allclose(radius[y == 0], 1.0)
    np.testing.assert_allclose(radius[y == 1], 0.5)


def test_bad_generator_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="n_samples"):
        data.circles(1)
    with pytest.raises(ValueError, match="noise"):
        data.moons(10, noise=-1.0)
    with pytest.raises(ValueError, match="factor"):
        data.circles(10, factor=1.5)
    for make in (data.circles, data.moons):
        with pytest.raises(ValueError, match=r"^seed: expected .* non-negative int seed, got -1"):
            make(10, seed=-1)


def test_digits_are_the_bundled_real_images() -> None:
    pytest.importorskip("sklearn")
    X, y = data.digits()
    assert X.shape == (1797, 64) and set(np.unique(y)) == set(range(10))
    assert X.min() == 0 and X.max() == 16


def test_course_circles_are_the_courses_draws() -> None:
    pytest.importorskip("sklearn")
    (X_train, y_train), (X_test, y_test) = data.course_circles()
    assert X_train.shape == (300, 2) and X_test.shape == (100, 2)
    assert y_train.sum() == 150 and y_test.sum() == 50


def test_csv_with_a_named_label_column_and_string_classes(tmp_path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("a,kind,b\n1.5,cat,2\n3,dog,4\n5,cat,6\n")
    table = data.load_table(path, label="kind")
    np.testing.assert_array_equal(table.X, [[1.5, 2], [3, 4], [5, 6]])
    assert table.y.tolist() == [0, 1, 0] and table.classes == ["cat", "dog"]
    assert table.feature_names == ["a", "b"]


def test_npy_files_plain_and_structured(tmp_path) -> None:
    plain = tmp_path / "plain.npy"
    np.save(plain, np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 1.0]]))
    table = data.load_table(plain, label=-1)
    assert table.y.tolist() == [0, 1] and table.X.shape == (2, 2)
    structured = tmp_path / "structured.npy"
    np.save(structured, np.array([(1.0, 0), (2.0, 1)], dtype=[("x", "f8"), ("target", "i8")]))
    assert data.load_table(structured, label="target").feature_names == ["x"]


def test_bad_files_and_labels_get_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        data.load_table(tmp_path / "missing.csv", label="y")
    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"label: expected one of the columns \['a', 'b'\]"):
        data.load_table(path, label="y")
    path.write_text("a,b\n1,x\n")
    with pytest.raises(ValueError, match=r"column 'b' of t\.csv is not numeric"):
        data.load_table(path, label=0)
    (tmp_path / "t.txt").write_text("")
    with pytest.raises(ValueError, match=r"expected a \.csv or \.npy"):
        data.load_table(tmp_path / "t.txt", label=0)
