"""The reference network: a fully connected deep network in NumPy with hand-written backpropagation.

Samples are rows by default: ``X`` has shape (m, n_features). Layer l has ``W{l}`` of shape (n_l, n_{l-1}) (as
``torch.nn.Linear``) and ``b{l}`` of shape (n_l,), so ``Z_l = A_{l-1} W_l^T + b_l``. With ``layout="columns"`` samples
are columns, as in the course: ``X`` (n_features, m), ``b{l}`` (n_l, 1), ``Z_l = W_l A_{l-1} + b_l`` (n_l, m), and
parameters, inputs, traces and gradients line up tensor by tensor with a learner's code (:mod:`preflight.nn.layout`).
The dtype of the parameters decides the dtype of the whole computation (float32 and float64 alike); costs are
summed in float64.

The cost is the head's mean loss plus ``l2 / (2 m) * sum_l ||W_l||_F^2``. Dropout is inverted dropout on hidden
layers: a unit is kept with probability ``keep_prob`` and scaled by ``1 / keep_prob``. Pass ``masks=`` (from
:meth:`Network.dropout_masks`) to freeze the masks: the cost is then a deterministic function of the parameters and
its gradient can be checked.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import DTypeLike, NDArray

from preflight._util.aliases import Params, RngLike
from preflight._util.blas import limit_blas_threads
from preflight._util.validation import check_array, check_choice, check_in_range, check_positive_int, describe
from preflight.init import schemes as initializers
from preflight.nn.activations import ACTIVATIONS, Activation
from preflight.nn.heads import HEADS, Head
from preflight.nn.hessian import hvp as hessian_vector_product
from preflight.nn.layout import (
    LAYOUTS,
    Layout,
    bias_shape,
    keep_mask,
    labels_in_rows,
    params_in_layout,
    params_in_rows,
)
from preflight.nn.layout import samples_in_layout as in_layout
from preflight.nn.training import Callback, History, gradient_descent

__all__ = ["DropoutMasks", "History", "Network", "Trace"]

A = NDArray[Any]
#: One boolean keep-mask per hidden layer, shape (m, n_l) ((n_l, m) in columns): True where the unit is kept.
DropoutMasks = tuple[NDArray[np.bool_], ...]


@dataclass(frozen=True)
class Trace:
    """Everything one forward pass computed, layer by layer (what backprop needs, and what a diagnosis looks at).

    Attributes
    ----------
    inputs : list of ndarray
        ``A_0 = X, A_1, ..., A_{L-1}``, after dropout: the input of layer ``l`` is ``inputs[l - 1]``.
    logits : list of ndarray
        Pre-activations ``Z_1, ..., Z_L``; ``logits[-1]`` is the output layer's, before the head.
    activations : list of ndarray
        ``phi(Z_1), ..., phi(Z_{L-1})`` before dropout.
    """

    inputs: list[A]
    logits: list[A]
    activations: list[A]


class Network:
    """A fully connected network with a hand-written backward pass.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first: ``[64, 100, 50, 10]`` has three layers.
    hidden : str or sequence of str
        Activation of the hidden layers, one name for all or one per hidden layer:
        relu, leaky_relu, tanh, sigmoid, linear.
    output : {"sigmoid", "softmax", "linear"}
        The head: sigmoid + binary cross-entropy, softmax + categorical cross-entropy, linear + squared error.
    l2 : float
        L2 regularization strength lambda (>= 0).
    keep_prob : float
        Dropout keep probability for hidden layers, in (0, 1]; 1 means no dropout.
    layout : {"rows", "columns"}
        Samples as rows (``X`` (m, n_x), ``b`` (n,)) or as columns, the course's layout (``X`` (n_x, m), ``b``
        (n, 1), labels (1, m)); the arithmetic is the same in both (:mod:`preflight.nn.layout`).

    Examples
    --------
    >>> net = Network([2, 4, 1], hidden="tanh", output="sigmoid")
    >>> params = net.init(0, scheme="lecun")
    >>> X = np.array([[0.0, 1.0], [1.0, 0.0]]); y = np.array([0, 1])
    >>> sorted(net.gradients(params, X, y)) == sorted(params)
    True
    >>> course = Network([2, 4, 1], hidden="tanh", output="sigmoid", layout="columns")
    >>> grads = course.gradients(course.init(0, scheme="lecun"), X.T, y[None, :])
    >>> grads["b1"].shape, bool(np.allclose(grads["W1"], net.gradients(params, X, y)["W1"]))
    ((4, 1), True)
    """

    def __init__(
        self,
        sizes: Sequence[int],
        hidden: str | Sequence[str] = "relu",
        output: str = "sigmoid",
        *,
        l2: float = 0.0,
        keep_prob: float = 1.0,
        layout: Layout = "rows",
    ) -> None:
        if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence) or len(sizes) < 2:
            raise ValueError(f"sizes: expected a sequence of at least 2 layer widths, got {describe(sizes)}")
        self.sizes = [check_positive_int(s, name=f"sizes[{i}]") for i, s in enumerate(sizes)]
        if isinstance(hidden, str):
            check_choice(hidden, name="hidden", allowed=ACTIVATIONS)  # also when there is no hidden layer to use it
        elif not isinstance(hidden, Sequence):
            raise ValueError(
                f"hidden: expected an activation name (one of {sorted(ACTIVATIONS)}) or a list of names, one per "
                f"hidden layer, got {describe(hidden)}"
            )
        names = [hidden] * (len(sizes) - 2) if isinstance(hidden, str) else list(hidden)
        if len(names) != len(sizes) - 2:
            raise ValueError(f"hidden: expected one name or {len(sizes) - 2} names, got {len(names)}")
        self.hidden = [check_choice(h, name="hidden", allowed=ACTIVATIONS) for h in names]
        self.output = check_choice(output, name="output", allowed=HEADS)
        self.l2 = check_in_range(l2, name="l2", low=0.0, high=np.inf, high_open=True)
        self.keep_prob = check_in_range(keep_prob, name="keep_prob", low=0.0, high=1.0, low_open=True)
        check_choice(layout, name="layout", allowed=LAYOUTS)
        self.layout: Layout = layout

    def __repr__(self) -> str:
        layout = f", layout={self.layout!r}" if self.layout != "rows" else ""
        return (
            f"Network({self.sizes}, hidden={self.hidden}, output={self.output!r}, "
            f"l2={self.l2}, keep_prob={self.keep_prob}{layout})"
        )

    @property
    def depth(self) -> int:
        """Number of layers with parameters."""
        return len(self.sizes) - 1

    @property
    def head(self) -> Head:
        """The output head (activation and loss)."""
        return HEADS[self.output]

    def activation(self, layer: int) -> Activation:
        """Activation of hidden layer ``layer`` (1-based)."""
        return ACTIVATIONS[self.hidden[layer - 1]]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Expected shape of every parameter, in order W1, b1, W2, b2, ..."""
        out: dict[str, tuple[int, ...]] = {}
        for layer in range(1, self.depth + 1):
            out[f"W{layer}"] = (self.sizes[layer], self.sizes[layer - 1])
            out[f"b{layer}"] = bias_shape(self.sizes[layer], self.layout)
        return out

    # ------------------------------------------------------------------ parameters
    def init(
        self,
        rng: RngLike,
        scheme: str | initializers.Initializer = "he",
        *,
        dtype: DTypeLike = np.float64,
    ) -> Params:
        """Fresh parameters: weights from ``scheme``, drawn layer by layer with ``rng``; biases zero.

        Parameters
        ----------
        rng : numpy Generator, RandomState or int seed
            A RandomState reproduces ``np.random.seed(s)`` code that calls ``randn`` layer by layer.
        scheme : str or initializer
            A name from ``preflight.init.SCHEMES`` ("he", "lecun", "glorot", "zeros", ...), or any
            ``init(rng, shape, dtype)`` callable such as ``preflight.init.normal(10.0)``.
        dtype : float32 or float64
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype: expected float32 or float64, got {dtype}")
        weights = initializers.get(scheme)
        generator = initializers.as_generator(rng)
        params: Params = {}
        for name, shape in self.shapes().items():
            if name[0] == "b":
                params[name] = np.zeros(shape, dtype=dtype)
                continue
            drawn = weights(generator, shape, dtype)
            if getattr(drawn, "shape", None) != shape or getattr(drawn, "dtype", None) != dtype:
                raise ValueError(
                    f"scheme: expected an array of shape {shape} and dtype {np.dtype(dtype)} for {name}, "
                    f"got {describe(drawn)}"
                )
            params[name] = drawn
        return params

    def check_params(self, params: Params) -> np.dtype[Any]:
        """Check names, shapes and dtypes of ``params``; return their common float dtype."""
        if not isinstance(params, dict):
            raise ValueError(f"params: expected a dict of arrays, got {describe(params)}")
        expected = self.shapes()
        if set(params) != set(expected):
            missing, extra = sorted(set(expected) - set(params)), sorted(set(params) - set(expected))
            raise ValueError(f"params: expected keys {list(expected)}, missing {missing}, unexpected {extra}")
        dtypes = set()
        for name, shape in expected.items():
            value = params[name]
            if not isinstance(value, np.ndarray) or value.shape != shape:
                raise ValueError(f"params[{name!r}]: expected an array of shape {shape}, got {describe(value)}")
            if value.dtype not in (np.float32, np.float64):
                raise ValueError(f"params[{name!r}]: expected float32 or float64, got dtype {value.dtype}")
            dtypes.add(value.dtype)
        if len(dtypes) != 1:
            raise ValueError(f"params: expected one dtype for all arrays, got {sorted(str(d) for d in dtypes)}")
        return dtypes.pop()

    def _inputs(self, params: Params, X: Any) -> tuple[np.dtype[Any], A]:
        """The dtype of ``params`` and the batch in rows (a transposed view in columns)."""
        dtype = self.check_params(params)
        X = check_array(X, name="X", ndim=2)
        samples, features = ("column", "rows") if self.layout == "columns" else ("row", "columns")
        X = in_layout(X, self.layout)
        if X.shape[0] == 0:
            raise ValueError(
                f"X: expected at least one {samples} (sample), got shape {in_layout(X, self.layout).shape}"
            )
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X: expected {self.sizes[0]} features ({features}), got {X.shape[1]}")
        return dtype, X.astype(dtype, copy=False)

    def _targets(self, X: A, y: Any) -> A:
        y = labels_in_rows(y, X.shape[0], self.layout)
        return self.head.targets(y, m=X.shape[0], k=self.sizes[-1], dtype=X.dtype)

    def in_rows(self, params: Params) -> Params:
        """``params`` as the computation reads them, in rows (biases (n, 1) as (n,) views in columns)."""
        return params_in_rows(params, self.layout)

    def as_rows(self, params: Params, X: Any, y: Any) -> tuple[Network, Params, A, Any]:
        """This network in the rows layout, with ``params``, ``X`` and ``y`` as it reads them (views, no copy).

        Examples
        --------
        >>> net = Network([3, 2, 1], layout="columns"); params = net.init(0)
        >>> rows, p, X, y = net.as_rows(params, np.zeros((3, 5)), np.ones((1, 5)))
        >>> rows.layout, p["b1"].shape, X.shape, y.shape
        ('rows', (2,), (5, 3), (5, 1))
        """
        if self.layout == "rows":
            return self, params, X, y
        X = check_array(X, name="X", ndim=2)
        twin = copy.copy(self)
        twin.layout = "rows"
        return twin, self.in_rows(params), X.T, labels_in_rows(y, X.shape[1], self.layout)

    # ------------------------------------------------------------------ dropout
    def dropout_masks(self, rng: RngLike, m: int) -> DropoutMasks:
        """Draw one keep-mask per hidden layer for a batch of ``m`` samples (freeze them by reusing them)."""
        return tuple(in_layout(mask, self.layout) for mask in self._draw_masks(rng, m))

    def _draw_masks(self, rng: RngLike, m: int) -> DropoutMasks:
        generator = initializers.as_generator(rng)
        m = check_positive_int(m, name="m")
        return tuple(generator.random((m, n)) < self.keep_prob for n in self.sizes[1:-1])

    def _masks(self, m: int, rng: RngLike | None, masks: DropoutMasks | None) -> DropoutMasks | None:
        """The masks in rows: the given ones (in the layout) checked and transposed if needed, or fresh ones."""
        if masks is not None:
            if self.keep_prob == 1.0:
                raise ValueError("masks: given, but keep_prob is 1.0 (this network has no dropout)")
            expected = [(n, m) if self.layout == "columns" else (m, n) for n in self.sizes[1:-1]]
            got = [getattr(mask, "shape", None) for mask in masks]
            if got != expected:
                raise ValueError(f"masks: expected boolean arrays of shapes {expected}, got {got}")
            return tuple(in_layout(keep_mask(mask, layer), self.layout) for layer, mask in enumerate(masks))
        if self.keep_prob == 1.0:
            return None
        return self._draw_masks(np.random.default_rng() if rng is None else rng, m)

    # ------------------------------------------------------------------ forward and backward
    def trace(self, params: Params, X: Any, *, masks: DropoutMasks | None = None) -> Trace:
        """Run the forward pass and keep every layer's input, pre-activation and activation.

        Without ``masks`` no dropout is applied (inference); pass frozen masks from :meth:`dropout_masks` to see a
        training pass. In columns every array of the trace is (n_l, m), as the course's cache holds them.

        Examples
        --------
        >>> net = Network([3, 5, 2], hidden="relu", output="softmax")
        >>> trace = net.trace(net.init(0, "he"), np.ones((4, 3)))
        >>> [z.shape for z in trace.logits], len(trace.activations)
        ([(4, 5), (4, 2)], 1)
        """
        _, X = self._inputs(params, X)
        frozen = self._masks(X.shape[0], None, masks) if masks is not None else None
        cache = self._forward_pass(self.in_rows(params), X, frozen)
        if self.layout == "rows":
            return cache
        inputs, logits, activations = ([in_layout(a, self.layout) for a in arrays] for arrays in vars(cache).values())
        return Trace(inputs=inputs, logits=logits, activations=activations)

    def _forward_pass(self, params: Params, X: A, masks: DropoutMasks | None) -> Trace:
        cache = Trace(inputs=[X], logits=[], activations=[])
        scale = X.dtype.type(1.0 / self.keep_prob)
        a = X
        for layer in range(1, self.depth + 1):
            z = a @ params[f"W{layer}"].T + params[f"b{layer}"]
            cache.logits.append(z)
            if layer < self.depth:
                a = self.activation(layer).forward(z)
                cache.activations.append(a)
                if masks is not None:
                    a = a * masks[layer - 1] * scale
                cache.inputs.append(a)
        return cache

    def _cost(self, params: Params, cache: Trace, targets: A) -> float:
        m = int(targets.shape[0])
        data: float = float(np.sum(self.head.losses(cache.logits[-1], targets), dtype=np.float64)) / m
        if self.l2 == 0.0:
            return data
        squares = sum(float(np.sum(np.square(params[f"W{k}"], dtype=np.float64))) for k in range(1, self.depth + 1))
        return data + self.l2 / (2 * m) * float(squares)

    def _backward(self, params: Params, cache: Trace, targets: A, masks: DropoutMasks | None) -> Params:
        m = targets.shape[0]
        dtype = targets.dtype.type
        scale = dtype(1.0 / self.keep_prob)
        dz = self.head.delta(cache.logits[-1], targets) / dtype(m)
        grads: Params = {}
        for layer in range(self.depth, 0, -1):
            w = params[f"W{layer}"]
            grads[f"W{layer}"] = dz.T @ cache.inputs[layer - 1] + dtype(self.l2 / m) * w
            grads[f"b{layer}"] = dz.sum(axis=0)
            if layer > 1:
                da = dz @ w
                if masks is not None:
                    da = da * masks[layer - 2] * scale
                dz = da * self.activation(layer - 1).derivative(cache.logits[layer - 2], cache.activations[layer - 2])
        return {name: grads[name] for name in self.shapes()}

    def cost(
        self, params: Params, X: Any, y: Any, *, rng: RngLike | None = None, masks: DropoutMasks | None = None
    ) -> float:
        """The training cost: mean loss plus the L2 term (with dropout when keep_prob < 1).

        With dropout and neither ``masks`` nor ``rng`` given, fresh masks are drawn from fresh entropy, so the
        cost is random; pass ``masks=net.dropout_masks(rng, m)`` for a deterministic cost.
        """
        _, X = self._inputs(params, X)
        targets = self._targets(X, y)
        masks = self._masks(X.shape[0], rng, masks)
        rows = self.in_rows(params)
        return self._cost(rows, self._forward_pass(rows, X, masks), targets)

    def gradients(
        self, params: Params, X: Any, y: Any, *, rng: RngLike | None = None, masks: DropoutMasks | None = None
    ) -> Params:
        """Gradient of :meth:`cost` by backpropagation: same keys, shapes (layout) and dtype as ``params``."""
        return self.cost_and_gradients(params, X, y, rng=rng, masks=masks)[1]

    def cost_and_gradients(
        self, params: Params, X: Any, y: Any, *, rng: RngLike | None = None, masks: DropoutMasks | None = None
    ) -> tuple[float, Params]:
        """:meth:`cost` and :meth:`gradients` from one forward pass (and one set of dropout masks)."""
        _, X = self._inputs(params, X)
        targets = self._targets(X, y)
        masks = self._masks(X.shape[0], rng, masks)
        rows = self.in_rows(params)
        cache = self._forward_pass(rows, X, masks)
        grads = params_in_layout(self._backward(rows, cache, targets, masks), self.layout)
        return self._cost(rows, cache, targets), grads

    def hvp(self, params: Params, X: Any, y: Any, v: Params, *, masks: DropoutMasks | None = None) -> Params:
        """The Hessian of :meth:`cost` times ``v`` by the R-operator, by hand (:func:`preflight.nn.hessian.hvp`)."""
        return hessian_vector_product(self, params, X, y, v, masks=masks)

    # ------------------------------------------------------------------ inference
    def forward(self, params: Params, X: Any) -> A:
        """The network's output (no dropout): probabilities for classification heads, values for linear."""
        _, X = self._inputs(params, X)
        return in_layout(self.head.output(self._forward_pass(self.in_rows(params), X, None).logits[-1]), self.layout)

    def predict(self, params: Params, X: Any) -> A:
        """Predicted labels (sigmoid: output > 0.5; softmax: argmax) or values (linear); (1, m) or (k, m) in columns."""
        _, X = self._inputs(params, X)
        predicted = self.head.predict(self._forward_pass(self.in_rows(params), X, None).logits[-1])
        return in_layout(
            predicted[:, None] if self.layout == "columns" and predicted.ndim == 1 else predicted, self.layout
        )

    def accuracy(self, params: Params, X: Any, y: Any) -> float:
        """Fraction of correct predictions (classification heads only)."""
        if self.output == "linear":
            raise ValueError("accuracy: a linear (regression) head has no accuracy; compare costs instead")
        _, X = self._inputs(params, X)
        targets = self._targets(X, y)
        predicted = self.head.predict(self._forward_pass(self.in_rows(params), X, None).logits[-1])
        truth = targets.argmax(axis=1) if self.output == "softmax" else targets.reshape(predicted.shape) > 0.5
        return float(np.mean(predicted == truth))

    # ------------------------------------------------------------------ training
    @limit_blas_threads
    def fit(
        self,
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
        """Gradient descent from ``params`` (left untouched); returns the trained copy and the cost history.

        Parameters
        ----------
        learning_rate : float
        iterations : int
            Number of parameter updates.
        batch_size : int, optional
            Mini-batch size; None for full-batch gradient descent. Batches come from a shuffle per epoch.
        rng : Generator, RandomState or int, optional
            For shuffling and dropout; required when either is used, so runs are reproducible.
        record_every : int
            The cost (of the batch, before the update, as in the course) is recorded at iterations
            0, record_every, 2 record_every, ...
        callbacks : sequence of callables
            Each is called as ``callback(iteration, params)`` before every update, and once more with
            ``iteration == iterations`` after the last.
        """
        return gradient_descent(
            self,
            params,
            X,
            y,
            learning_rate=learning_rate,
            iterations=iterations,
            batch_size=batch_size,
            rng=rng,
            record_every=record_every,
            callbacks=callbacks,
        )
