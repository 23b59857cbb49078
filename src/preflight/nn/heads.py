"""Output heads: the last activation with its loss, both computed from the logits z.

Computing the loss from logits never takes log(0): binary cross-entropy is ``max(z, 0) - y z + log1p(exp(-|z|))``
and categorical cross-entropy uses a log-softmax shifted by the row maximum. For all three heads the gradient of
the per-sample loss with respect to z is ``output(z) - y``, which is what backprop starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight._util.validation import check_array
from preflight.nn.activations import sigmoid

__all__ = ["HEADS", "Head"]

A = NDArray[Any]
#: Rows of a one-hot / probability target must sum to 1 within this (float32 one-hot rows sum exactly to 1;
#: label-smoothed rows written to CSV with a few decimals still pass).
_ROW_SUM_TOLERANCE = 1e-4


def _softmax(z: A) -> A:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: A = e / e.sum(axis=1, keepdims=True)
    return out


def _log_softmax(z: A) -> A:
    shifted = z - z.max(axis=1, keepdims=True)
    out: A = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return out


@dataclass(frozen=True)
class Head:
    """An output activation paired with its loss."""

    name: str
    loss_name: str

    def output(self, z: A) -> A:
        """The network's output for logits ``z`` (probabilities or values)."""
        if self.name == "sigmoid":
            return sigmoid(z)
        if self.name == "softmax":
            return _softmax(z)
        return z

    def losses(self, z: A, targets: A) -> A:
        """Per-sample loss, shape (m,), in the dtype of ``z``."""
        out: A
        if self.name == "sigmoid":
            out = (np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))).sum(axis=1)
        elif self.name == "softmax":
            out = -(targets * _log_softmax(z)).sum(axis=1)
        else:
            out = 0.5 * ((z - targets) ** 2).sum(axis=1)
        return out

    def delta(self, z: A, targets: A) -> A:
        """Gradient of each sample's loss with respect to its logits."""
        return self.output(z) - targets

    def curvature(self, z: A, direction: A) -> A:
        """The derivative of :meth:`delta` along ``direction`` of the logits: each sample's loss Hessian in z times
        its row of ``direction`` (sigmoid: ``s (1 - s) d``; softmax: ``p d - p (p . d)``; linear: ``d``).

        Examples
        --------
        >>> HEADS["softmax"].curvature(np.zeros((1, 2)), np.array([[1.0, 0.0]])).tolist()
        [[0.25, -0.25]]
        """
        if self.name == "linear":
            return direction
        p = self.output(z)
        if self.name == "sigmoid":
            out: A = p * (1 - p) * direction
            return out
        out = p * direction - p * (p * direction).sum(axis=1, keepdims=True)
        return out

    def predict(self, z: A) -> A:
        """Class labels (sigmoid: 0/1 per output; softmax: the argmax) or regression values."""
        if self.name == "sigmoid":
            labels = (self.output(z) > 0.5).astype(np.int64)
            return labels[:, 0] if labels.shape[1] == 1 else labels
        if self.name == "softmax":
            out: A = z.argmax(axis=1)
            return out
        return z[:, 0] if z.shape[1] == 1 else z

    def targets(self, y: Any, *, m: int, k: int, dtype: np.dtype[Any]) -> A:
        """Validate labels ``y`` against this head and return them as an (m, k) array of ``dtype``.

        Raises
        ------
        ValueError
            Wrong number of samples or outputs, non-finite values, or labels outside the head's range.
        """
        y = check_array(y, name="y", ndim=(1, 2))
        if np.issubdtype(y.dtype, np.complexfloating):
            raise ValueError(f"y: expected real labels, got dtype {y.dtype}; pass y.real if the imaginary part is 0")
        if y.shape[0] != m:
            raise ValueError(f"y: expected {m} labels (one per row of X), got {y.shape[0]}")
        if self.name == "softmax" and y.ndim == 1:
            return self._one_hot(y, k=k, dtype=dtype)
        if y.ndim == 1:
            y = y[:, None]
        if y.shape[1] != k:
            raise ValueError(f"y: expected {k} column(s) for a {self.name} head with {k} outputs, got shape {y.shape}")
        if self.name == "sigmoid" and (y.min() < 0 or y.max() > 1):
            raise ValueError(f"y: expected labels in [0, 1] for a sigmoid head, got values from {y.min()} to {y.max()}")
        if self.name == "softmax":
            sums = y.sum(axis=1)
            if y.min() < 0 or np.abs(sums - 1).max() > _ROW_SUM_TOLERANCE:
                raise ValueError("y: expected one-hot (or probability) rows, non-negative and summing to 1")
        out: A = y.astype(dtype)
        return out

    @staticmethod
    def _one_hot(y: A, *, k: int, dtype: np.dtype[Any]) -> A:
        if not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(f"y: expected integer class labels in [0, {k}) for a softmax head, got non-integers")
        if y.min() < 0 or y.max() >= k:
            raise ValueError(
                f"y: expected integer class labels in [0, {k}) for a softmax head with {k} outputs, "
                f"got values from {y.min()} to {y.max()}"
            )
        out = np.zeros((y.shape[0], k), dtype=dtype)
        out[np.arange(y.shape[0]), y.astype(np.int64)] = 1
        return out


HEADS: dict[str, Head] = {
    "sigmoid": Head("sigmoid", "binary cross-entropy"),
    "softmax": Head("softmax", "categorical cross-entropy"),
    "linear": Head("linear", "mean squared error (1/2m sum of squares)"),
}
