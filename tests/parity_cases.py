"""The same math in JAX and in PyTorch, correct and with realistic backward bugs: the registry of
tests/test_jax_parity.py and benchmarks/jax_torch_parity.py, where ``preflight.jax.check_function`` must give the
verdict ``preflight.torch.check_function`` gives.

Each :class:`Case` is written once against a small namespace of operations (:class:`Ops`), which :func:`jax_ops` and
:func:`torch_ops` fill; its inputs are NumPy arrays drawn from a seed, handed to both frameworks as they are.
Families: float32/float64 staircases (round, floor, ceil, trunc, alone and times a smooth function), smooth
functions whose float32 outputs round on a grid (an MLP, tanh, softmax), functions at kinks and ties (relu, abs, max),
and hand-written backwards (``jax.custom_vjp``, ``torch.autograd.Function``) with a wrong constant, a dropped term or
one wrong element, each of relative Jacobian error >= 1e-3 (:func:`relative_size` measures it in float64).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

Fn = Callable[..., Any]
#: A backward: ``(ops, inputs, output, cotangent) -> one gradient per input``.
Backward = Callable[[Any, Sequence[Any], Any, Any], tuple[Any, ...]]


@dataclass(frozen=True)
class Ops:
    """What a case's math calls, in one framework."""

    name: str
    round: Callable[[Any, int], Any]
    softmax: Fn
    log_softmax: Fn
    relu: Fn
    maximum: Fn
    floor: Fn
    ceil: Fn
    trunc: Fn
    tanh: Fn
    custom: Callable[[Fn, Backward], Fn]


def jax_ops() -> Ops:
    import jax
    import jax.numpy as jnp

    def custom(forward: Fn, backward: Backward) -> Fn:
        @jax.custom_vjp
        def f(*args: Any) -> Any:
            return forward(ops, *args)

        def fwd(*args: Any) -> Any:
            y = forward(ops, *args)
            return y, (args, y)

        def bwd(res: Any, g: Any) -> Any:
            args, y = res
            return tuple(backward(ops, args, y, g))

        f.defvjp(fwd, bwd)
        return f

    ops = Ops("jax", lambda x, d: jnp.round(x, d), lambda x: jax.nn.softmax(x, axis=-1),
              lambda x: jax.nn.log_softmax(x, axis=-1), jax.nn.relu, jnp.maximum,
              jnp.floor, jnp.ceil, jnp.trunc, jnp.tanh, custom)  # fmt: skip
    return ops


def torch_ops() -> Ops:
    import torch

    def custom(forward: Fn, backward: Backward) -> Fn:
        class Function(torch.autograd.Function):
            @staticmethod
            def forward(ctx: Any, *args: Any) -> Any:
                y = forward(ops, *args)
                ctx.save_for_backward(*args, y)
                return y

            @staticmethod
            def backward(ctx: Any, g: Any) -> Any:
                *args, y = ctx.saved_tensors
                return tuple(backward(ops, args, y, g))

        return Function.apply

    ops = Ops("torch", lambda x, d: torch.round(x, decimals=d), lambda x: torch.softmax(x, -1),
              lambda x: torch.log_softmax(x, -1), torch.relu,
              torch.maximum, torch.floor, torch.ceil, torch.trunc, torch.tanh, custom)  # fmt: skip
    return ops


@dataclass(frozen=True)
class Case:
    """``build(ops)`` returns the function; ``inputs(rng)`` its float64 NumPy inputs (cast to the dtype checked);
    ``correct``: its backward is right."""

    name: str
    family: str
    build: Callable[[Ops], Fn]
    inputs: Callable[[np.random.Generator], list[Any]]
    correct: bool = True


def _normal(*shape: int, scale: float = 1.0) -> Callable[[np.random.Generator], list[Any]]:
    return lambda rng: [scale * rng.standard_normal(shape)]


def _at_kinks(rng: np.random.Generator) -> list[Any]:
    """A (3, 4) input with a third of its elements exactly 0 (relu's and abs's kink)."""
    x = rng.standard_normal((3, 4))
    x[rng.random((3, 4)) < 1 / 3] = 0.0
    return [x]


def _tied(rng: np.random.Generator) -> list[Any]:
    """Two (3, 4) inputs equal in about half their elements (max's ties)."""
    a, b = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    tie = rng.random((3, 4)) < 0.5
    return [a, np.where(tie, a, b)]


def _mlp_inputs(rng: np.random.Generator) -> list[Any]:
    return [rng.standard_normal((4, 3)), rng.standard_normal((3, 5)) / 2, 0.1 * rng.standard_normal(5),
            rng.standard_normal((5, 2)) / 2]  # fmt: skip


def _classifier_inputs(rng: np.random.Generator) -> list[Any]:
    """The float32 MLP of tests/test_torch_function_quanta.py: x (4, 3), W1 (5, 3), b1, W2 (2, 5), b2."""
    return [rng.standard_normal(shape) for shape in ((4, 3), (5, 3), (5,), (2, 5), (2,))]


def _layer_inputs(rng: np.random.Generator) -> list[Any]:
    return [rng.standard_normal((5, 4)), rng.standard_normal((4, 3)) / 2, 0.1 * rng.standard_normal(3)]


def _tanh_layer(bug: str | None, factor: float = 1.05) -> Callable[[Ops], Fn]:
    """``tanh(x @ w + b)`` with a hand-written backward; ``bug``: "one element" scales dL/dw[1, 2] by ``factor``."""

    def forward(o: Ops, x: Any, w: Any, b: Any) -> Any:
        return o.tanh(x @ w + b)

    def backward(o: Ops, args: Sequence[Any], y: Any, g: Any) -> tuple[Any, ...]:
        x, w, _ = args
        dz = g * (1 - y * y)
        gw = x.T @ dz
        if bug == "one element":
            mask = np.ones((4, 3))
            mask[1, 2] = factor
            gw = gw * _like(o, mask, gw)
        return dz @ w.T, gw, dz.sum(0)

    return lambda o: o.custom(forward, backward)


def _gelu(constant: float) -> Callable[[Ops], Fn]:
    """GELU's tanh approximation with its backward's sqrt(2/pi) written as ``constant`` (0.7979 is right)."""
    c, a = float(np.sqrt(2 / np.pi)), 0.044715

    def forward(o: Ops, x: Any) -> Any:
        return 0.5 * x * (1 + o.tanh(c * (x + a * x**3)))

    def backward(o: Ops, args: Sequence[Any], y: Any, g: Any) -> tuple[Any, ...]:
        (x,) = args
        t = o.tanh(c * (x + a * x**3))
        return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * constant * (1 + 3 * a * x * x)),)

    return lambda o: o.custom(forward, backward)


def _tanh_plus_square(dropped: bool) -> Callable[[Ops], Fn]:
    """``tanh(x) + 0.003 x^2``, whose backward with ``dropped`` leaves out the small term 0.006 x."""

    def forward(o: Ops, x: Any) -> Any:
        return o.tanh(x) + 0.003 * x * x

    def backward(o: Ops, args: Sequence[Any], y: Any, g: Any) -> tuple[Any, ...]:
        (x,) = args
        t = o.tanh(x)
        return (g * (1 - t * t) if dropped else g * (1 - t * t + 0.006 * x),)

    return lambda o: o.custom(forward, backward)


def _like(o: Ops, values: Any, like: Any) -> Any:
    """A NumPy constant in the framework and dtype of ``like``."""
    if o.name == "torch":
        import torch

        return torch.as_tensor(values, dtype=like.dtype)
    import jax.numpy as jnp

    return jnp.asarray(values, dtype=like.dtype)


CASES: list[Case] = [
    # staircases: their derivative is 0 (or the smooth factor's), their differences see the stairs
    Case("round(x, 3)", "staircase", lambda o: lambda x: o.round(x, 3), _normal(3, 4)),
    Case("round(x, 4)", "staircase", lambda o: lambda x: o.round(x, 4), _normal(3, 4)),
    Case("floor(100 x) / 100", "staircase", lambda o: lambda x: o.floor(100 * x) / 100, _normal(3, 4)),
    Case("ceil(100 x) / 100", "staircase", lambda o: lambda x: o.ceil(100 * x) / 100, _normal(3, 4)),
    Case("trunc(100 x) / 100", "staircase", lambda o: lambda x: o.trunc(100 * x) / 100, _normal(3, 4)),
    Case(
        "floor(100 x) / 100 + x^2",
        "staircase x smooth",
        lambda o: lambda x: o.floor(100 * x) / 100 + x * x,
        _normal(3, 4),
    ),
    Case(
        "tanh(round(x, 3)) * x",
        "staircase x smooth",
        lambda o: lambda x: o.tanh(o.round(x, 3)) * x,
        _normal(3, 4, scale=3.0),
    ),
    # smooth functions whose float32 rows round on a grid coarser than their noise
    Case("mlp", "grid", lambda o: lambda x, w1, b1, w2: o.softmax(o.tanh(x @ w1 + b1) @ w2), _mlp_inputs),
    Case(
        "mlp, log_softmax head",
        "grid",
        lambda o: lambda x, w1, b1, w2, b2: o.log_softmax(o.tanh(x @ w1.T + b1) @ w2.T + b2),
        _classifier_inputs,
    ),
    Case("tanh", "grid", lambda o: o.tanh, _normal(3, 4, scale=2.0)),
    Case("softmax", "grid", lambda o: o.softmax, _normal(3, 6, scale=2.0)),
    Case("tanh of a 0-d input", "grid", lambda o: o.tanh, lambda rng: [np.asarray(rng.standard_normal())]),
    # kinks and ties at the point
    Case("relu at 0", "kink", lambda o: o.relu, _at_kinks),
    Case("abs at 0", "kink", lambda o: abs, _at_kinks),
    Case("max with ties", "kink", lambda o: o.maximum, _tied),
    # hand-written backwards, correct and buggy
    Case("tanh layer", "custom", _tanh_layer(None), _layer_inputs),
    Case("tanh layer, one element x1.05", "bug", _tanh_layer("one element"), _layer_inputs, correct=False),
    Case("tanh layer, one element x1.01", "bug", _tanh_layer("one element", 1.01), _layer_inputs, correct=False),
    Case("gelu", "custom", _gelu(float(np.sqrt(2 / np.pi))), _normal(3, 4)),
    Case("gelu, sqrt(2/pi) as 0.81", "bug", _gelu(0.81), _normal(3, 4), correct=False),
    Case("tanh + 0.003 x^2", "custom", _tanh_plus_square(False), _normal(3, 4)),
    Case("tanh + 0.003 x^2, term dropped", "bug", _tanh_plus_square(True), _normal(3, 4), correct=False),
]

BY_NAME = {case.name: case for case in CASES}


def jax_report(case: Case, dtype: str, seed: int) -> Any:
    """``preflight.jax.check_function`` on the case's draw ``seed`` in ``dtype`` (x64 on for float64)."""
    import jax
    import jax.numpy as jnp

    from preflight.jax import check_function

    with jax.enable_x64(dtype == "float64"):
        args = [jnp.asarray(a, dtype=dtype) for a in case.inputs(np.random.default_rng(seed))]
        return check_function(case.build(jax_ops()), *args)


def torch_report(case: Case, dtype: str, seed: int) -> Any:
    """``preflight.torch.check_function`` on the same draw."""
    import torch

    from preflight.torch import check_function

    kind = getattr(torch, dtype)
    args = [torch.tensor(a, dtype=kind, requires_grad=True) for a in case.inputs(np.random.default_rng(seed))]
    return check_function(case.build(torch_ops()), *args)


def relative_size(case: Case, seed: int = 0) -> float:
    """The backward's relative Jacobian error in float64, ``||J_backward - J|| / ||J||``, against torch's autograd
    of the same math through the correct case of the family (0 for a correct case)."""
    import torch

    if case.correct:
        return 0.0
    reference = BY_NAME[case.name.split(",")[0]]  # a bug is named "<its correct case>, <the bug>"
    args = [torch.tensor(a, dtype=torch.float64) for a in case.inputs(np.random.default_rng(seed))]
    ops = torch_ops()

    def jacobian(fn: Fn) -> Any:
        parts = torch.autograd.functional.jacobian(fn, tuple(args))
        return torch.cat([p.reshape(-1) for p in parts])

    wrong, right = jacobian(case.build(ops)), jacobian(reference.build(ops))
    return float(torch.linalg.norm(wrong - right) / torch.linalg.norm(right))
