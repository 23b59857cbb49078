"""The structure-aware full gradient check of the reference network: every coordinate, two real loss evaluations.

A black-box check pays a whole forward pass per perturbed coordinate. The reference network's structure makes most
of that pass redundant, without giving up a real evaluation of the loss at every perturbed point:

- a perturbation in layer l leaves everything before layer l unchanged: the prefix comes from one cached forward pass;
- ``W_l[i, j] += d`` changes only column i of ``Z_l = A_{l-1} W_l^T + b_l``, by ``d A_{l-1}[:, j]``, and ``b_l[i] += d``
  by the constant d; so only column i of ``A_l`` changes, and ``Z_{l+1}`` changes by the rank-one term
  ``(A_l'[:, i] - A_l[:, i]) W_{l+1}[:, i]^T``;
- from there on, K perturbed copies of the activations go through the remaining layers as one batched matrix product
  (K chosen so a batch stays around :data:`BATCH_BYTES`), and the head's loss is evaluated on every copy;
- the L2 term changes analytically: ``||W + d e_ij||^2 = ||W||^2 + d (2 W_ij + d)``, in float64.

Every function the network's own cost uses (activations, dropout scaling, the head's loss from logits, float64
summation) is the same here, so the values agree with :meth:`preflight.nn.Network.cost` up to the order of rounding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.aliases import Params
from preflight._util.blas import limit_blas_threads, one_blas_thread
from preflight._util.validation import describe
from preflight.check.engine import GradcheckReport, NondeterministicLossError
from preflight.check.engine import gradcheck as run_check
from preflight.nn.logit_series import LogitSeries
from preflight.nn.network import DropoutMasks, Network
from preflight.nn.series import coth_bound, series_terms, tanh_series

__all__ = ["BATCH_BYTES", "NetworkPerturbedLoss", "check_network", "gradcheck", "perturbed_costs"]

A = NDArray[Any]
F64 = NDArray[np.float64]
#: Target size of the largest array of one batch of perturbed copies. A few MiB keeps a batch in the L2/L3 caches
#: (elementwise passes over it then run at cache speed) while each BLAS call still gets thousands of rows.
BATCH_BYTES = 4 * 2**20


class NetworkPerturbedLoss:
    """The costs of the reference network at many single-coordinate perturbations (a ``PerturbedLoss``).

    The parameters are copied and one forward pass is cached when the object is built; each call then evaluates
    the cost at ``params[name][idx] + offsets[name][idx]`` for every name in ``offsets`` and every idx whose
    perturbed value differs from the unperturbed one (the others get the unperturbed cost).

    Parameters
    ----------
    net : Network
    params : dict of arrays
        Checked like :meth:`Network.cost` does; copied, so later changes to the caller's arrays do not matter.
    X, y : array-like
        The batch, as for :meth:`Network.cost`.
    masks : tuple of boolean arrays, optional
        Frozen dropout masks; required when ``net.keep_prob < 1`` (the cost is otherwise random).

    Examples
    --------
    >>> net = Network([3, 4, 2], hidden="tanh", output="softmax")
    >>> params = net.init(0); X = np.eye(3); y = np.array([0, 1, 1])
    >>> costs = NetworkPerturbedLoss(net, params, X, y)({"b2": np.array([0.5, 0.0])})
    >>> moved = dict(params, b2=params["b2"] + [0.5, 0.0])
    >>> bool(np.isclose(costs["b2"][0], net.cost(moved, X, y))), bool(costs["b2"][1] == net.cost(params, X, y))
    (True, True)
    """

    #: Its loss (``net.cost``) computes in float64 at float64 copies: a float32 check reads it there (PerturbedLoss).
    loss_at_float64 = True

    def __init__(self, net: Network, params: Params, X: Any, y: Any, *, masks: DropoutMasks | None = None) -> None:
        if not isinstance(net, Network):
            raise ValueError(f"net: expected a preflight.nn.Network, got {describe(net)}")
        dtype, X = net._inputs(params, X)
        if net.keep_prob < 1.0 and masks is None:
            raise ValueError(
                f"masks: expected frozen dropout masks for a network with keep_prob={net.keep_prob} (its cost is "
                "random otherwise), got None; pass masks=net.dropout_masks(rng, m)"
            )
        self.net, self.dtype = net, dtype
        #: The caller's shapes (the network's layout); the copies below are in rows, as the arithmetic reads them.
        self.shapes = {name: np.shape(value) for name, value in params.items()}
        self.params = {name: np.array(value, copy=True) for name, value in net.in_rows(params).items()}
        self.targets = net._targets(X, y)
        self.masks = net._masks(X.shape[0], None, masks)
        cache = net._forward_pass(self.params, X, self.masks)
        self.inputs, self.logits, self._hidden = cache.inputs, cache.logits, cache.activations
        self._terms: dict[int, tuple[A, A]] = {}
        self._buffers: dict[tuple[str, int], A] = {}
        self._logit_series: dict[int, LogitSeries | None] = {}
        self.unperturbed = net._cost(self.params, cache, self.targets)
        self.squares = sum(
            float(np.sum(np.square(self.params[f"W{k}"], dtype=np.float64))) for k in range(1, net.depth + 1)
        )
        self.evaluations = 0

    @property
    def m(self) -> int:
        """Batch size."""
        return int(self.targets.shape[0])

    def __call__(self, offsets: Mapping[str, A], /) -> dict[str, F64]:
        checked = {name: self._offset(name, offset) for name, offset in offsets.items()}
        with one_blas_thread():
            return {name: self._tensor(name, offset).reshape(self.shapes[name]) for name, offset in checked.items()}

    def _offset(self, name: str, offset: Any) -> A:
        if name not in self.params:
            raise ValueError(f"offsets: expected names among {list(self.params)}, got {name!r}")
        array: A = np.asarray(offset)
        shape = self.shapes[name]
        if array.shape != shape or array.dtype.kind not in "iuf":
            raise ValueError(f"offsets[{name!r}]: expected a real array of shape {shape}, got {describe(array)}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"offsets[{name!r}]: expected finite values, got NaN or inf")
        return array.reshape(self.params[name].shape)

    def _tensor(self, name: str, offset: A) -> F64:
        """Costs for every coordinate of one tensor."""
        theta = self.params[name]
        moved = (theta + offset).astype(self.dtype)
        step = moved - theta  # in the dtype: the exact change the cost sees (moved and theta are both in it)
        index = np.flatnonzero(step)
        costs = np.full(theta.size, self.unperturbed, dtype=np.float64)
        layer = int(name[1:])
        fan_in = self.net.sizes[layer - 1]
        batch = self._batch(layer)
        for chunk in (index[start : start + batch] for start in range(0, index.size, batch)):
            d = step.reshape(-1)[chunk]
            if name[0] == "W":
                rows, cols = np.divmod(chunk, fan_in)
                column = self.logits[layer - 1][:, rows].T + d[:, None] * self.inputs[layer - 1][:, cols].T
                w = theta.reshape(-1)[chunk].astype(np.float64)
                d64 = moved.reshape(-1)[chunk].astype(np.float64) - w
                squares = self.squares + d64 * (2 * w + d64)
            else:
                rows = chunk
                column = self.logits[layer - 1][:, rows].T + d[:, None]
                squares = np.full(chunk.size, self.squares)
            costs[chunk] = self._costs(self._data_losses(layer, rows, column), squares)
            self.evaluations += int(chunk.size)
        return costs.reshape(theta.shape)

    def _batch(self, layer: int, *, exact: bool = False) -> int:
        """Perturbations per batch: the widest (K, m, n) array after layer ``layer`` stays near BATCH_BYTES (layer
        ``layer`` itself moves by one (K, m) column); through :class:`LogitSeries` the widest is the logits'."""
        widest = max(self.net.sizes[min(layer + 1, self.net.depth) :])
        if not exact and self._series(layer) is not None:
            widest = self.net.sizes[-1]
        return max(1, BATCH_BYTES // (self.m * widest * self.dtype.itemsize))

    def _series(self, layer: int) -> LogitSeries | None:
        """The logits' series for moves of hidden layer ``layer`` (None where it does not apply)."""
        if layer not in self._logit_series:
            self._logit_series[layer] = LogitSeries.for_layer(self.net, self.params, self._hidden, layer, self.masks)
        return self._logit_series[layer]

    def _costs(self, data: F64, squares: F64) -> F64:
        """Mean data loss plus the L2 term, as :meth:`Network.cost` adds them."""
        m, l2 = self.m, self.net.l2
        out: F64 = data / m if l2 == 0.0 else data / m + l2 / (2 * m) * squares
        return out

    def _data_losses(self, layer: int, units: NDArray[np.intp], column: A) -> F64:
        """Summed (float64) data loss for K copies of the network whose ``Z_layer[:, units[k]]`` is ``column[k]``."""
        net, k, depth = self.net, units.size, self.net.depth
        if layer == depth:
            logits = np.repeat(self.logits[-1].T[:, None, :], k, axis=1)
            logits[units, np.arange(k), :] = column
            return self._head_losses(logits, moves=False)
        activation = net.activation(layer).forward(column)
        if self.masks is not None:
            activation = activation * self.masks[layer - 1][:, units].T * self.dtype.type(1.0 / net.keep_prob)
        change = activation - self.inputs[layer][:, units].T
        series = self._series(layer)
        if series is not None:
            moves = series.changes(units, change)
            if moves is not None:
                return self._head_losses(moves)
            exact = self._batch(layer, exact=True)
            if k > exact:  # the series' batches are larger than the exact pass's memory allows
                parts = [
                    self._data_losses(layer, units[s : s + exact], column[s : s + exact]) for s in range(0, k, exact)
                ]
                return np.concatenate(parts)
        # Only column i of A_layer moved: Z_{layer+1} moves by a rank-one term per copy.
        weights = self.params[f"W{layer + 1}"][:, units]
        if layer + 1 == depth:
            outer = np.multiply(weights[:, :, None], change[None], out=self._buffer("logits", k, depth, last=True))
            return self._head_losses(outer)
        moved = self._rank_one_change(layer + 1, change, weights.T)
        for nxt in range(layer + 1, depth):
            if self.masks is not None:
                moved *= self.masks[nxt - 1]
                moved *= self.dtype.type(1.0 / net.keep_prob)
            flat, following = moved.reshape(-1, net.sizes[nxt]), self.params[f"W{nxt + 1}"]
            if nxt + 1 == depth:
                out = self._buffer("logits", k, depth, last=True).reshape(net.sizes[depth], -1)
                return self._head_losses(np.matmul(following, flat.T, out=out).reshape(-1, k, self.m))
            delta = np.matmul(flat, following.T, out=self._buffer("delta", k, nxt + 1).reshape(k * self.m, -1))
            moved = self._activation_change(nxt + 1, delta.reshape(k, self.m, -1))
        raise AssertionError("unreachable: the loop returns at the last layer")

    def _rank_one_change(self, layer: int, change: A, weights: A) -> A:
        """``phi(Z + change[k] weights[k]^T) - phi(Z)`` for K rank-one moves of hidden layer ``layer``'s (m, n) Z.

        For tanh, ``tanh(z + u) - tanh(z) = (1 - A^2) / (A + coth u)``, and for a small ``u = c w`` the Laurent series
        ``coth u = 1/u + u/3 - u^3/45`` is a product of rank 3, ``[1/c, c/3, -c^3/45] @ [1/w, w, w^3]``: one matrix
        product writes it for every copy, and two more passes give the change (sigmoid: the same at ``u / 2``).
        """
        name, k = self.net.hidden[layer - 1], change.shape[0]
        half = 0.5 if name == "sigmoid" else 1.0
        largest = float(np.max(np.abs(change), initial=0.0)) * float(np.max(np.abs(weights), initial=0.0)) * half
        if name not in ("tanh", "sigmoid") or largest > coth_bound(self.dtype):
            delta = np.multiply(change[:, :, None], weights[:, None, :], out=self._buffer("delta", k, layer))
            return self._activation_change(layer, delta)
        w = weights * self.dtype.type(half)
        # Where c or w is (nearly) 0 the change is (nearly) 0: computed as 1 there, then zeroed; so 1/c and 1/(c w)
        # stay finite (BLAS may pad the rank-3 product with zeros, and 0 x inf would be NaN).
        small = 4 * np.sqrt(np.finfo(self.dtype).tiny)
        still_c, still_w = np.abs(change) <= small, np.abs(w) <= small
        c, w = np.where(still_c, 1, change), np.where(still_w, 1, w)
        left = np.stack([1 / c, c / 3, c**3 / -45], axis=2)
        right = np.stack([1 / w, w, w**3], axis=1)
        coth = np.matmul(left, right, out=self._buffer("change", k, layer))
        level, slope = self._addition_terms(layer)
        coth += level
        moved = np.divide(slope, coth, out=coth)
        if still_c.any():
            moved[still_c] = 0
        if still_w.any():
            copies, units = np.nonzero(still_w)
            moved[copies, :, units] = 0
        return moved

    def _tanh_change(self, layer: int, t: A) -> A:
        """From ``t = tanh(u)``: ``tanh(z + u) - tanh(z) = t (1 - A^2) / (1 + A t)``, in place in ``t``."""
        level, slope = self._addition_terms(layer)
        denominator = np.multiply(level, t, out=self._buffer("scratch", t.shape[0], layer))
        denominator += 1
        t *= slope
        t /= denominator
        return t

    def _buffer(self, role: str, k: int, layer: int, *, last: bool = False) -> A:
        """A reused (k, m, n_layer) work array, or (n_layer, k, m) with ``last``: fresh multi-MiB temporaries
        would cost page faults on every batch."""
        key = (role, layer)
        n = self.net.sizes[layer]
        if key not in self._buffers or self._buffers[key].size < k * self.m * n:
            self._buffers[key] = np.empty(k * self.m * n, dtype=self.dtype)
        flat = self._buffers[key][: k * self.m * n]
        return flat.reshape((n, k, self.m) if last else (k, self.m, n))

    def _activation_change(self, layer: int, delta: A) -> A:
        """``phi(Z + delta) - phi(Z)`` for hidden layer ``layer``, K copies of its (m, n) pre-activations at once.

        tanh and sigmoid use their addition theorems, ``tanh(z + u) = (tanh z + tanh u) / (1 + tanh z tanh u)`` and
        ``sigmoid(x) = (1 + tanh(x / 2)) / 2``, with ``tanh u`` from its series when every ``|u|`` is small enough
        for the series to be exact to the dtype's precision (the usual case at gradient-check steps); NumPy's
        float64 tanh is not vectorized and would dominate the check. Otherwise, and for the other activations,
        the activation itself is evaluated at ``Z + delta``.
        """
        z, a = self.logits[layer - 1], self._hidden[layer - 1]
        name = self.net.hidden[layer - 1]
        if name == "linear":
            return delta
        k = delta.shape[0]
        if name in ("tanh", "sigmoid"):
            argument = delta
            if name == "sigmoid":
                argument = np.multiply(delta, 0.5, out=self._buffer("argument", k, layer))
            largest = max(float(argument.max(initial=0.0)), -float(argument.min(initial=0.0)))
            terms = series_terms(largest, self.dtype)
            if terms:
                t = tanh_series(
                    argument, terms, out=self._buffer("change", k, layer), scratch=self._buffer("scratch", k, layer)
                )
                return self._tanh_change(layer, t)
        out: A = np.subtract(self.net.activation(layer).forward(z + delta), a, out=self._buffer("change", k, layer))
        return out

    def _addition_terms(self, layer: int) -> tuple[A, A]:
        """For tanh ``(A, 1 - A^2)``; for sigmoid ``(2A - 1, 2A(1 - A))`` (its change is half that of tanh(x/2))."""
        if layer not in self._terms:
            a = self._hidden[layer - 1]
            if self.net.hidden[layer - 1] == "tanh":
                self._terms[layer] = (a, 1 - a * a)
            else:
                self._terms[layer] = (2 * a - 1, 2 * a * (1 - a))
        return self._terms[layer]

    def _head_losses(self, logits: A, *, moves: bool = True) -> F64:
        """Summed (float64) data loss of K copies from their logits laid out (n_out, K, m); with ``moves``, the
        argument holds the moves of the logits instead, and the cached logits are added to it in place.

        The formulas are :meth:`preflight.heads.Head.losses`, with the outputs on the first axis so that the sums
        over a few outputs are vector additions instead of many tiny reductions.
        """
        if moves:
            logits += self.logits[-1].T[:, None, :]
        targets = self.targets.T[:, None, :]
        name = self.net.output
        if name == "sigmoid":
            losses = (np.maximum(logits, 0) - logits * targets + np.log1p(np.exp(-np.abs(logits)))).sum(axis=0)
        elif name == "softmax":
            shifted = logits - logits.max(axis=0)
            log_softmax = shifted - np.log(np.exp(shifted).sum(axis=0))
            losses = -(targets * log_softmax).sum(axis=0)
        else:
            losses = 0.5 * ((logits - targets) ** 2).sum(axis=0)
        out: F64 = losses.sum(axis=1, dtype=np.float64)
        return out


def perturbed_costs(
    net: Network, params: Params, X: Any, y: Any, offsets: Mapping[str, A], *, masks: DropoutMasks | None = None
) -> dict[str, F64]:
    """The cost of the reference network with one coordinate moved, for every coordinate of the given tensors.

    Parameters
    ----------
    net : Network
    params : dict of arrays
        The parameters (left untouched).
    X, y : array-like
        The batch.
    offsets : mapping of name -> array
        For each name, an array shaped like ``params[name]`` (entries may be negative or 0).
    masks : tuple of boolean arrays, optional
        Frozen dropout masks (required when ``net.keep_prob < 1``).

    Returns
    -------
    dict of name -> float64 array
        At ``idx``: ``net.cost(params with params[name][idx] += offsets[name][idx], X, y, masks=masks)``; an entry
        whose move does not change the parameter (offset 0, or below its resolution) gets the unperturbed cost.

    Raises
    ------
    ValueError
        Invalid params, batch or offsets (unknown name, wrong shape, non-finite), or dropout without masks.

    Examples
    --------
    >>> net = Network([2, 3, 1], hidden="relu", output="sigmoid", l2=0.1)
    >>> params = net.init(0); X = np.array([[1.0, 2.0], [0.5, -1.0]]); y = np.array([1, 0])
    >>> costs = perturbed_costs(net, params, X, y, {"W1": np.full((3, 2), 1e-3)})
    >>> moved = dict(params, W1=params["W1"].copy()); moved["W1"][2, 1] += 1e-3
    >>> bool(np.isclose(costs["W1"][2, 1], net.cost(moved, X, y), rtol=1e-12))
    True
    """
    return NetworkPerturbedLoss(net, params, X, y, masks=masks)(offsets)


@limit_blas_threads
def check_network(
    net: Network,
    params: Params,
    X: Any,
    y: Any,
    *,
    masks: DropoutMasks | None = None,
    grads: Params | Callable[[Params], Params] | None = None,
    **options: Any,
) -> GradcheckReport:
    """Full gradient check of the reference network, with the structure-aware evaluator.

    Same checks, verdict and report as :func:`preflight.gradcheck.gradcheck` on ``net.cost``; only the perturbed
    costs come from :class:`NetworkPerturbedLoss` (prefix cached, rank-one updates, batched tail).

    Parameters
    ----------
    net : Network
    params : dict of arrays
    X, y : array-like
    masks : tuple of boolean arrays, optional
        Frozen dropout masks; required when ``net.keep_prob < 1``.
    grads : dict of arrays or callable, optional
        The analytic gradient under test (default: ``net.gradients``, the network's backprop).
    **options
        Passed to :func:`preflight.gradcheck.gradcheck`: ``eps``, ``sample``, ``seed``, ``method``, ``screen``,
        ``progress``, ``client`` (a Dask client: the evaluator is shipped once per worker).

    Returns
    -------
    GradcheckReport

    Raises
    ------
    NondeterministicLossError
        Dropout without frozen masks.
    ValueError
        Invalid params, batch or options.

    Examples
    --------
    >>> net = Network([4, 5, 3], hidden="tanh", output="softmax", l2=0.01)
    >>> params = net.init(0); X = np.random.default_rng(0).normal(size=(8, 4)); y = np.arange(8) % 3
    >>> check_network(net, params, X, y).passed
    True
    """
    if "evaluator" in options:
        raise ValueError("evaluator: not an option of the network check (it brings its own); got one")
    if isinstance(net, Network) and net.keep_prob < 1.0 and masks is None:
        raise NondeterministicLossError(
            f"masks: the network has dropout (keep_prob={net.keep_prob}), so its cost is random; freeze it with "
            "masks=net.dropout_masks(rng, m)"
        )
    evaluator = NetworkPerturbedLoss(net, params, X, y, masks=masks)
    options.setdefault("batch", evaluator.m)  # the hint for a missing 1/m names the batch's m

    def loss(p: Params) -> float:
        return net.cost(p, X, y, masks=masks)

    analytic = grads if grads is not None else net.gradients(params, X, y, masks=masks)
    return run_check(loss, params, analytic, evaluator=evaluator, **options)


def gradcheck(net: Network, params: Params, X: Any, y: Any, **options: Any) -> GradcheckReport:
    """Full gradient check of ``net``'s backprop at ``params``: every coordinate, structure-aware and fast.

    Every coordinate still gets two real cost evaluations, but a move in layer l reuses everything before layer l,
    a single weight moves one column of ``Z_l`` (a rank-one update), and many moves go through the rest of the
    network as one batched matrix product. Returns the same report as :func:`preflight.gradcheck`.

    Parameters
    ----------
    net : Network
    params : dict of arrays
    X, y : array-like
        The batch.
    **options
        ``masks=`` (frozen dropout masks, required with dropout), ``grads=`` (the analytic gradient under test,
        default ``net.gradients``), and the checker's options: ``eps``, ``sample``, ``seed``, ``method``, ...

    Returns
    -------
    preflight.check.GradcheckReport

    Examples
    --------
    >>> net = Network([3, 4, 2], hidden="tanh", output="softmax", l2=0.1)
    >>> gradcheck(net, net.init(0), np.eye(3), [0, 1, 1]).passed
    True
    """
    return check_network(net, params, X, y, **options)
