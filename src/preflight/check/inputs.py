"""What the engine checks: the parameter leaves, the analytic gradient matched to them, the noise probe, the sample.

Everything here validates or measures; nothing decides a verdict (that is :mod:`preflight.check.verdict`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.validation import describe
from preflight.check import numdiff
from preflight.check.report import label
from preflight.check.tree import flatten

__all__ = [
    "MIN_PER_TENSOR",
    "Leaves",
    "analytic_gradient",
    "course_names",
    "detection_chance",
    "measure_noise",
    "moved_all",
    "parameter_leaves",
    "sample_coordinates",
    "screen_directions",
]

F64 = NDArray[np.float64]
Leaves = dict[str, NDArray[Any]]
#: Minimum coordinates per tensor when sampling.
MIN_PER_TENSOR = 16


def parameter_leaves(params: Any) -> Leaves:
    leaves: Leaves = {}
    for name, value in flatten(params):
        if not isinstance(value, np.ndarray):
            raise ValueError(f"params[{name!r}]: expected a NumPy array (perturbed in place), got {describe(value)}")
        if not np.issubdtype(value.dtype, np.floating):
            why = (
                "an integer parameter cannot be moved by a small step (convert it with .astype(float), or leave it "
                "out of params)"
                if np.issubdtype(value.dtype, np.integer) or value.dtype == np.bool_
                else "check complex parameters as two real arrays (real and imaginary parts)"
                if np.issubdtype(value.dtype, np.complexfloating)
                else "only real floating-point arrays can be perturbed"
            )
            raise ValueError(f"params[{name!r}]: expected a floating dtype, got {value.dtype}: {why}")
        if not np.all(np.isfinite(value)):
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(value))[0])
            raise ValueError(
                f"params[{name!r}]: expected finite values, got NaN/inf at {label(name, value.shape, first)}"
            )
        if not value.flags.writeable:
            raise ValueError(f"params[{name!r}]: the array is read-only; the check perturbs it in place")
        if name in leaves:
            raise ValueError(f"params: two leaves share the name {name!r}")
        for other, seen in leaves.items():
            if np.may_share_memory(value, seen) and np.shares_memory(value, seen):
                raise ValueError(
                    f"params[{name!r}]: shares memory with params[{other!r}]; moving one would move the other "
                    "(pass separate arrays)"
                )
        leaves[name] = value
    if not leaves:
        raise ValueError("params: expected at least one array, got an empty structure")
    if not any(a.size for a in leaves.values()):
        raise ValueError(
            f"params: every array is empty ({', '.join(f'{n}: shape {a.shape}' for n, a in leaves.items())}): "
            "there is no coordinate to check"
        )
    return leaves


def analytic_gradient(grads: Any, params: Any, leaves: Leaves, notes: list[str] | None = None) -> dict[str, F64]:
    """The gradient under test as float64 arrays, one per parameter leaf, validated against the leaves.

    ``grads`` names its entries as ``params`` does, or in the course's naming (``"dW1"`` for ``"W1"``, at any
    depth: see :func:`course_names`); in the course's naming, entries that are no parameter's gradient (``dZ1``,
    ``dA1``, caches) are left out and named in one line appended to ``notes``.
    """
    if callable(grads):
        grads = grads(params)
    named = course_names(dict(flatten(grads)), leaves, notes)
    out: dict[str, F64] = {}
    for name, arr in leaves.items():
        g = np.asarray(named[name])
        if g.shape != arr.shape:
            raise ValueError(f"grads[{name!r}]: expected shape {arr.shape} (as params), got {describe(named[name])}")
        if not np.issubdtype(g.dtype, np.number):
            raise ValueError(f"grads[{name!r}]: expected a numeric array, got dtype {g.dtype}")
        if np.issubdtype(g.dtype, np.complexfloating):  # a cast to float64 would drop the imaginary part
            raise ValueError(
                f"grads[{name!r}]: expected a real gradient (params are real), got dtype {g.dtype}; return the "
                "gradient of the real loss (its real part, if the imaginary part is a bug)"
            )
        g = g.astype(np.float64)
        if not np.all(np.isfinite(g)):
            first = tuple(int(i) for i in np.argwhere(~np.isfinite(g))[0])
            raise ValueError(f"grads[{name!r}]: expected finite values, got NaN/inf at {label(name, g.shape, first)}")
        out[name] = g
    return out


def _with_d(name: str) -> str:
    """The course's name for the gradient of ``name``: a ``d`` before its last component (``a.W1`` -> ``a.dW1``)."""
    head, dot, last = name.rpartition(".")
    return f"{head}{dot}d{last}"


def _listed(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def course_names(named: dict[str, Any], leaves: Leaves, notes: list[str] | None = None) -> dict[str, Any]:
    """Gradient entries keyed by the parameter they belong to, read as named like params or in the course's naming.

    An entry named like a parameter is that parameter's gradient. When some parameter has no such entry, the
    course's naming is tried: ``"dW1"`` is the gradient of ``"W1"``, ``"layer1.db"`` of ``"layer1.b"`` (a ``d``
    before the last component of the dotted name, at any depth). It is accepted when it is complete (every parameter
    found under one of its two names) and unambiguous (no parameter under both); the entries left over (``dZ1``,
    ``dA1``, caches) are not gradients of parameters: they are dropped and named in one line appended to ``notes``.

    Raises
    ------
    ValueError
        Entries missing, or a parameter found under both names, or (named like params) unexpected entries; the
        message names them and says how the ``d``-prefix rule was tried.

    Examples
    --------
    >>> leaves = {"W1": np.ones((2, 2)), "b1": np.zeros((2, 1))}
    >>> notes = []
    >>> grads = {"dZ1": 0, "dW1": np.ones((2, 2)), "db1": np.zeros((2, 1)), "dA0": 0}
    >>> sorted(course_names(grads, leaves, notes))
    ['W1', 'b1']
    >>> print(notes[0])
    grads in the course's naming (dW1 -> W1, db1 -> b1); ignored: dZ1, dA0 (not parameters)
    """
    missing = [n for n in leaves if n not in named]
    if not missing:
        extra = [n for n in named if n not in leaves]
        if extra:
            raise ValueError(f"grads: expected the structure of params; unexpected entries {sorted(extra)}")
        return named
    both = [n for n in leaves if n in named and _with_d(n) in named]
    absent = [n for n in missing if _with_d(n) not in named]
    renamed = [n for n in missing if _with_d(n) in named]
    if not renamed and not both:
        extra = sorted(n for n in named if n not in leaves)
        tried = ", ".join(repr(_with_d(n)) for n in missing[:6])
        raise ValueError(
            f"grads: expected the structure of params; missing {sorted(missing)}, unexpected {extra} (the course's "
            f"naming, a 'd' before the last component ({tried}), matched none either)"
        )
    if both or absent:
        word = "or" if absent else "and"
        tried = ", ".join(f"{n!r} {word} {_with_d(n)!r}" for n in (absent or both)[:6])
        problem = (
            f"no entry for {absent} (looked for each parameter's own name and, the course's naming, the name with "
            f"a 'd' before its last component: {tried})"
            if absent
            else f"{both} given under both names ({tried}): ambiguous, keep one of them"
        )
        found = ", ".join(f"{_with_d(n)} -> {n}" for n in renamed) or "none"
        unmatched = [g for g in named if g not in leaves and g not in {_with_d(n) for n in leaves}]
        raise ValueError(
            f"grads: {problem}; matched by the d-prefix rule: {found}; entries that match no parameter: "
            f"{_listed(unmatched) or 'none'}"
        )
    used = set(leaves) | {_with_d(n) for n in renamed}
    ignored = [g for g in named if g not in used]
    if notes is not None:
        line = f"grads in the course's naming ({', '.join(f'{_with_d(n)} -> {n}' for n in renamed)})"
        notes.append(line + (f"; ignored: {_listed(ignored)} (not parameters)" if ignored else ""))
    return {n: named[n] if n in named else named[_with_d(n)] for n in leaves}


@contextmanager
def moved_all(leaves: Leaves) -> Iterator[Callable[[dict[str, F64]], None]]:
    """Move every leaf by a float64 offset (rounded to its dtype); everything is restored on exit."""
    saved = {name: arr.copy() for name, arr in leaves.items()}

    def move(offsets: dict[str, F64]) -> None:
        for name, arr in leaves.items():
            np.copyto(arr, (saved[name] + offsets[name]).astype(arr.dtype) if name in offsets else saved[name])

    try:
        yield move
    finally:
        for name, arr in leaves.items():
            np.copyto(arr, saved[name])


#: The precision a loss may compute in behind a float64 return value (float32), tried when the probe at the
#: parameters' own ulps finds the loss flat in steps.
HIDDEN_EPSILON = 2.0**-23
#: The probe is below the loss's resolution when at least this share of its 15 consecutive differences is exactly
#: zero (a loss rounding at its own ulps changes at nearly every step of a few ulps of the parameters).
FLAT_SHARE = 0.25
#: ... and it is taken for a float32 loss only if the probe at float32's ulps measures a noise of at least this share
#: of ``eps32 |f0|``: a value rounded to float32 errs uniformly within half an ulp (ulp >= eps |f| / 2), a standard
#: deviation of at least eps |f| / (2 sqrt(12)) = 0.14 eps |f|; a third of that leaves room for ECnoise's +-25 %. A
#: float64 loss moved by float32's ulps reads its own rounding (1e-9 of that) plus its smoothness over the moves.
HIDDEN_ROUNDING = 0.05
#: Before that, where the probe at the parameters' ulps is flat: a probe moving each nonzero coordinate by up to
#: 16 x 15 x 2^-36 of itself (2^13 float64 ulps, 3.5e-9: below half a float32 ulp, 6e-8), which a loss that casts to
#: float32 inside cannot see (every cast comes back equal), while a float64 loss whose gradient is too small to move
#: it by an ulp per step at 16 ulps (a trained network) moves there; its rounding is measured there. (Without it,
#: such a loss moved by float32's ulps reads kinks as float32 noise: a float32 ReLU network trained 1000 steps, at
#: float64 copies, measured 1.1e-8 for a noise of 2e-17, and passed a 2e-3 error in W1.)
BETWEEN_EPSILON = 2.0**-36


def measure_noise(
    value: Callable[[], float], leaves: Leaves, f0: float, seed: int, output_epsilon: float = 0.0
) -> tuple[float, float]:
    """Measured rounding noise of the loss, and the machine epsilon it rounds at.

    ECnoise along a random direction moving every coordinate a few ulps: those of the coarser of each tensor's dtype
    and the loss's own (``output_epsilon``). A loss that computes in float32 behind a float64 value does not see a
    move of a few float64 ulps: its values come back equal in steps, and the probe is repeated at float32's ulps;
    if the loss moves there, float32 is the epsilon returned, and the step follows it too. (A loss that stays flat
    there too, a staircase, keeps the parameters' epsilon: its verdict comes from the differences themselves.)
    """
    rng = np.random.default_rng(seed + 7919)
    signs = {n: rng.choice([-1.0, 1.0], size=a.shape) for n, a in leaves.items()}

    def probe(eps: float, relative: bool = False) -> list[float]:
        directions = {
            n: signs[n] * 16 * max(numdiff.machine_epsilon(a.dtype), eps) * (np.abs(a) if relative else
                                                                              np.maximum(1.0, np.abs(a)))
            for n, a in leaves.items()
        }  # fmt: skip
        values = []
        with moved_all(leaves) as move:
            for k in range(16):
                move({n: k * d for n, d in directions.items()})
                values.append(value())
        return values

    def flat(values: list[float]) -> bool:
        return bool(np.mean(np.diff(values) == 0) >= FLAT_SHARE)

    eps = max(max(numdiff.machine_epsilon(a.dtype) for a in leaves.values()), output_epsilon)
    values = probe(eps)
    if flat(values) and HIDDEN_EPSILON > BETWEEN_EPSILON > eps and not flat(between := probe(BETWEEN_EPSILON, True)):
        values = between  # a float64 loss with a small gradient: it resolves moves float32 cannot see
    elif flat(values) and HIDDEN_EPSILON > eps:
        coarser = probe(HIDDEN_EPSILON)
        # Flat steps alone do not make a float32 loss: a float64 loss whose gradient is small moves by less than
        # one of its ulps per step too. A loss rounding at float32 shows float32's rounding at float32's steps.
        if not flat(coarser) and numdiff.estimate_noise(coarser) >= HIDDEN_ROUNDING * HIDDEN_EPSILON * abs(f0):
            values, eps = coarser, HIDDEN_EPSILON
    # The floor: the final rounding of the value to a float of epsilon eps errs by up to half an ulp, <= eps |f0| / 2
    # (ECnoise reads less only when its 16 values happen to round alike).
    return max(numdiff.estimate_noise(values), eps * abs(f0) / 2), eps


def screen_directions(screen: Any) -> int:
    """``screen`` as a number of random directions: False -> 0 (no screen), True -> 3, or a positive integer."""
    if isinstance(screen, (bool, np.bool_)):
        return 3 if screen else 0
    if isinstance(screen, (int, np.integer)) and screen >= 1:
        return int(screen)
    raise ValueError(f"screen: expected True, False or a number of directions >= 1, got {describe(screen)}")


def sample_coordinates(
    leaves: Leaves, sample: int | float | None, rng: np.random.Generator
) -> dict[str, NDArray[np.intp]]:
    total = sum(a.size for a in leaves.values())
    if sample is None:
        return {n: np.arange(a.size) for n, a in leaves.items()}
    if isinstance(sample, (float, np.floating)) and 0.0 < sample <= 1.0:
        fraction = float(sample)
    elif isinstance(sample, (int, np.integer)) and not isinstance(sample, (bool, np.bool_)) and sample >= 1:
        fraction = min(1.0, int(sample) / total)
    else:
        raise ValueError(
            f"sample: expected a fraction in (0, 1] or a number of coordinates >= 1, got {describe(sample)}"
        )
    out = {}
    for n, a in leaves.items():
        k = min(a.size, max(MIN_PER_TENSOR, math.ceil(fraction * a.size)))
        out[n] = np.sort(rng.choice(a.size, size=k, replace=False)) if k < a.size else np.arange(a.size)
    return out


def detection_chance(leaves: Leaves, index: dict[str, NDArray[np.intp]]) -> dict[float, float]:
    """For q in (1 %, 10 %): the smallest, over tensors, chance that a sample hits >= 1 of q N broken coordinates."""
    out = {}
    for q in (0.01, 0.1):
        worst = 1.0
        for n, a in leaves.items():
            size, k = a.size, index[n].size
            bad = max(1, math.ceil(q * size))
            log_miss = sum(math.log1p(-bad / (size - j)) if size - j > bad else -math.inf for j in range(k))
            worst = min(worst, 1.0 - math.exp(log_miss))
        out[q] = worst
    return out
