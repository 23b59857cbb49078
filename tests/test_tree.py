"""Specification of preflight.tree: dotted names, one raveled theta, zero-copy views back, exact round trips."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from preflight.check.tree import flatten, ravel, unravel

leaves = hnp.arrays(
    dtype=st.sampled_from([np.float64, np.float32]),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
    elements=st.floats(-1e6, 1e6, width=32),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3).map(tuple),
        st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), children, min_size=1, max_size=3),
    ),
    max_leaves=8,
)


def same_tree(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same_tree(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same_tree(x, y) for x, y in zip(a, b, strict=True))
    return bool(a.shape == b.shape and np.array_equal(a, b))


@settings(max_examples=150, deadline=None)
@given(trees)
def test_ravel_then_unravel_gives_back_the_same_tree(tree: Any) -> None:
    theta, spec = ravel(tree)
    assert theta.ndim == 1 and theta.size == sum(np.size(v) for _, v in flatten(tree))
    assert same_tree(spec.unravel(theta), tree)


@settings(max_examples=50, deadline=None)
@given(trees)
def test_unraveled_leaves_are_views_of_theta(tree: Any) -> None:
    theta, spec = ravel(tree)
    for (_, leaf), piece in zip(flatten(tree), flatten(unravel(theta, spec)), strict=True):
        assert piece[1].size == 0 or np.shares_memory(piece[1], theta)
        assert piece[1].shape == np.shape(leaf)


def test_names_are_dotted_paths_in_order() -> None:
    tree = {"layers": [{"W": np.ones((2, 2)), "b": np.zeros(2)}, {"W": np.ones((1, 2))}], "scale": (np.ones(1),)}
    assert [name for name, _ in flatten(tree)] == ["layers.0.W", "layers.0.b", "layers.1.W", "scale.0"]
    assert [name for name, _ in flatten(np.ones(3))] == ["params"]


def test_writing_through_an_unraveled_view_writes_theta() -> None:
    theta, spec = ravel({"W": np.ones((2, 3)), "b": np.zeros(2)})
    spec.unravel(theta)["W"][1, 2] = 7.0
    assert theta[5] == 7.0
    assert spec.slices()["b"] == slice(6, 8)


def test_ravel_copies_so_the_caller_keeps_its_arrays() -> None:
    w = np.ones(3)
    theta, _ = ravel({"w": w})
    theta[0] = 5.0
    assert w[0] == 1.0


def test_unravel_rejects_a_theta_of_the_wrong_size() -> None:
    _, spec = ravel({"w": np.ones(3)})
    with pytest.raises(ValueError, match="theta: expected a 1-D array of 3 entries"):
        unravel(np.ones(4), spec)


def test_non_numeric_leaves_are_named() -> None:
    with pytest.raises(ValueError, match=r"params\['a.b'\]: expected a numeric array"):
        ravel({"a": {"b": np.array(["x"])}})
