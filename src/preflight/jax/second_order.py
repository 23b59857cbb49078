"""Second-order checks for JAX: the derivatives of a function's VJP, ``check_function(f, *primals, order=2)``.

The first-order check runs first (a first-order failure is reported as such). Then the backward itself becomes the
function checked: ``(*primals, cotangent) -> vjp(f, *primals)(cotangent)``, whose VJP JAX gives by differentiating
the backward (the user's ``custom_vjp`` backward rule, or the transpose of a ``custom_jvp`` rule), and
:func:`preflight.jax.check_function` compares it, entry by entry, with central differences of the backward: with
respect to every primal and to the cotangent (drawn at random, seeded). What ``jax.test_util.check_grads(order=2)``
checks along one random direction, here per entry, with the calibrated verdict and every entry located.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from preflight.check.report import GradcheckReport
from preflight.check.second_order import SecondOrder, attach

__all__ = ["check_function_twice"]


def check_function_twice(
    f: Callable[..., Any], *primals: Any, names: Sequence[str] | None = None, seed: int = 0, worst: int = 5,
    **options: Any,
) -> GradcheckReport:  # fmt: skip
    """``check_function(f, *primals, order=2)``: the first-order check, then the Jacobian of the backward (module
    docstring) in the report's ``second_order`` section, one row per primal and one for the cotangent."""
    from preflight.jax.function import check_function

    first = check_function(f, *primals, names=names, seed=seed, worst=worst, reference=False, **options)
    return attach(first, lambda: _backward_check(f, primals, names, seed, worst, options))


def _backward_check(
    f: Callable[..., Any], primals: tuple[Any, ...], names: Sequence[str] | None, seed: int, worst: int,
    options: dict[str, Any],
) -> SecondOrder:  # fmt: skip
    import jax

    from preflight.jax.function import check_function

    labels = list(names) if names is not None else [f"input{i}" for i in range(len(primals))]
    leaves, treedef = jax.tree_util.tree_flatten(f(*primals))
    if not all(np.issubdtype(np.asarray(leaf).dtype, np.floating) for leaf in leaves):
        return SecondOrder({}, [], [], 0, False, "f has an integer output: its cotangent is not a number to vary")
    rng = np.random.default_rng(seed)
    cotangent = jax.tree_util.tree_unflatten(
        treedef,
        [jax.numpy.asarray(rng.standard_normal(np.shape(leaf)), dtype=np.asarray(leaf).dtype) for leaf in leaves],
    )

    def backward(*args: Any) -> Any:
        *moved, ct = args
        return jax.vjp(f, *moved)[1](ct)

    rest = {k: v for k, v in options.items() if k != "modes"}
    try:
        inner = check_function(
            backward,
            *primals,
            cotangent,
            modes=("rev",),
            names=[*labels, "grad_output"],
            seed=seed,
            worst=worst,
            reference=False,
            **rest,
        )
    except (TypeError, ValueError, NotImplementedError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return SecondOrder({}, [], [], 0, False, f"JAX cannot differentiate the backward of f ({reason})")
    notes = [
        "second order: the Jacobian of the backward (primals, cotangent) -> vjp(f, *primals)(cotangent), by JAX's "
        "reverse mode through the backward, against central differences of the backward (cotangent drawn at random, "
        f"seed {seed}); an entry 'x[i] -> output[k, j]' is d(gradient of argument k)[j] / dx[i]; "
        f"{inner.evaluations:,} backward evaluations",
        *(f"second order: {n}" for n in inner.notes),
    ]
    if inner.stopped:
        return SecondOrder({}, [], notes, inner.evaluations, False, inner.stopped)
    return SecondOrder(dict(inner.parameters), list(inner.hints), notes, inner.evaluations, inner.passed)
