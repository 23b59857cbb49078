"""Training the reference network: gradient descent, full batch or mini-batches, with callbacks along the way.

:meth:`preflight.nn.Network.fit` runs :func:`gradient_descent`; the parameters stay in the network's layout
throughout (callbacks see them as the caller passed them), the arithmetic runs on row-layout views of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import Params, RngLike
from preflight._util.rng import as_generator
from preflight._util.validation import check_in_range, check_positive_int, describe
from preflight.nn.layout import params_in_rows

if TYPE_CHECKING:
    from preflight.nn.network import Network

__all__ = ["Callback", "History", "gradient_descent"]

Callback = Callable[[int, Params], None]


@dataclass
class History:
    """What :meth:`Network.fit` returns: the trained parameters (a copy) and the cost along the way."""

    params: Params
    iterations: list[int] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)


def gradient_descent(
    net: Network,
    params: Params,
    X: Any,
    y: Any,
    *,
    learning_rate: float,
    iterations: int,
    batch_size: int | None = None,
    rng: RngLike | None = None,
    record_every: int = 100,
    callbacks: Sequence[Callback] = (),
) -> History:
    """Gradient descent on ``net`` from ``params`` (left untouched): :meth:`preflight.nn.Network.fit`'s work."""
    learning_rate = check_in_range(learning_rate, name="learning_rate", low=0.0, high=np.inf, low_open=True)
    iterations = check_positive_int(iterations, name="iterations", minimum=0)
    record_every = check_positive_int(record_every, name="record_every")
    _, X = net._inputs(params, X)
    targets = net._targets(X, y)
    m = X.shape[0]
    if batch_size is not None:
        batch_size = min(check_positive_int(batch_size, name="batch_size"), m)
    needs_rng = (batch_size is not None and batch_size < m) or net.keep_prob < 1.0
    if needs_rng and rng is None:
        raise ValueError("rng: expected a Generator or seed for mini-batches or dropout, got None")
    if callable(callbacks) or not all(callable(c) for c in callbacks):
        raise ValueError(
            f"callbacks: expected a list of callables callback(iteration, params), such as [callback], got "
            f"{describe(callbacks)}"
        )
    generator = as_generator(rng) if rng is not None else None
    trained = {name: value.copy() for name, value in params.items()}
    rows = params_in_rows(trained, net.layout)  # views: updating them updates ``trained``
    history = History(params=trained)
    batches = _batches(m, batch_size, generator)
    lr = X.dtype.type(learning_rate)
    for iteration in range(iterations):
        for callback in callbacks:
            callback(iteration, trained)
        picked = next(batches)
        xb, tb = (X, targets) if picked is None else (X[picked], targets[picked])
        masks = net._masks(xb.shape[0], generator, None)
        cache = net._forward_pass(rows, xb, masks)
        if iteration % record_every == 0:
            history.iterations.append(iteration)
            history.costs.append(net._cost(rows, cache, tb))
        for name, grad in net._backward(rows, cache, tb, masks).items():
            rows[name] -= lr * grad
    for callback in callbacks:
        callback(iterations, trained)
    return history


def _batches(
    m: int, batch_size: int | None, rng: np.random.Generator | np.random.RandomState | None
) -> Iterator[NDArray[np.intp] | None]:
    """Endless sample-index batches: None (the full batch) or index arrays from a fresh shuffle every epoch."""
    while True:
        if batch_size is None or batch_size >= m or rng is None:
            yield None
            continue
        order = rng.permutation(m)
        for start in range(0, m, batch_size):
            yield order[start : start + batch_size]
