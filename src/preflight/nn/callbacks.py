"""Training callbacks for :meth:`preflight.nn.Network.fit`: a gradient check at initialization and after N steps.

A backward pass can be right at initialization and wrong later (a branch that only a trained network takes, a
saturated unit, a kink that training walks into), so the check runs at chosen iterations of training too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from preflight._util.aliases import Params
from preflight._util.validation import check_array, check_positive_int, describe
from preflight._util.warn import PreflightWarning, warn
from preflight.check.engine import GradcheckReport
from preflight.nn.fast_check import check_network
from preflight.nn.network import Network

__all__ = ["GradcheckCallback", "GradcheckWarning", "GradientCheckError"]


#: Keyword options a callback may pass on to the check (the rest of gradcheck's arguments it sets itself).
_GRADCHECK_OPTIONS = {"eps", "sample", "method", "screen", "progress"}


class GradcheckWarning(PreflightWarning, RuntimeWarning):
    """A check during training failed and ``raise_on_failure`` is off (a RuntimeWarning, as it always was)."""


class GradientCheckError(AssertionError):
    """A gradient check run during training failed (raised when ``raise_on_failure=True``)."""


class GradcheckCallback:
    """Check the gradient at chosen iterations of :meth:`Network.fit` (``callbacks=[GradcheckCallback(...)]``).

    Parameters
    ----------
    net : Network
        The network being trained.
    X, y : array-like
        The batch to check on; the first ``batch`` rows are used.
    at : sequence of int
        Iterations at which to check (0 is the initialization).
    after : int, optional
        Shorthand: check at 0 and at ``after``.
    batch : int
        Rows of ``X`` used by the check (the check's cost grows with it).
    raise_on_failure : bool
        Raise :class:`GradientCheckError` on a failed check (default: warn and go on).
    seed : int
        Seeds the frozen dropout masks (when the network has dropout) and the check.
    **options
        Passed to :func:`preflight.gradcheck.gradcheck` (``sample=``, ``eps=``, ...).

    Examples
    --------
    >>> net = Network([2, 4, 1], hidden="tanh", output="sigmoid")
    >>> X, y = np.random.default_rng(0).standard_normal((8, 2)), np.arange(8) % 2
    >>> callback = GradcheckCallback(net, X, y, after=20)
    >>> _ = net.fit(net.init(0, "glorot"), X, y, learning_rate=0.1, iterations=30, callbacks=[callback])
    >>> sorted(callback.reports), all(r.passed for r in callback.reports.values())
    ([0, 20], True)
    """

    def __init__(
        self,
        net: Network,
        X: Any,
        y: Any,
        *,
        at: Sequence[int] = (0,),
        after: int | None = None,
        batch: int = 64,
        raise_on_failure: bool = False,
        seed: int = 0,
        **options: Any,
    ) -> None:
        self.net = net
        batch = check_positive_int(batch, name="batch")
        X = check_array(X, name="X", ndim=2)
        y = np.asarray(y)
        if net.layout == "columns":  # samples as columns: X (n_x, m), y (m,) or (k, m)
            if y.ndim == 0 or y.shape[-1] != X.shape[1]:
                raise ValueError(f"y: expected {X.shape[1]} labels (one per column of X), got shape {y.shape}")
            self.X, self.y = X[:, :batch], y[..., :batch]
        else:
            if y.ndim == 0 or y.shape[0] != X.shape[0]:
                raise ValueError(f"y: expected {X.shape[0]} labels (one per row of X), got shape {y.shape}")
            self.X, self.y = X[:batch], y[:batch]
        self.m = int(self.X.shape[1] if net.layout == "columns" else self.X.shape[0])
        if isinstance(at, (int, np.integer)) or not isinstance(at, Iterable):
            raise ValueError(f"at: expected a sequence of iterations such as [0, 100], got {describe(at)}")
        unknown = sorted(set(options) - _GRADCHECK_OPTIONS)
        if unknown:
            raise ValueError(f"options: expected among {sorted(_GRADCHECK_OPTIONS)} (gradcheck's), got {unknown}")
        iterations = {check_positive_int(i, name="at", minimum=0) for i in at}
        if after is not None:
            iterations |= {0, check_positive_int(after, name="after")}
        self.at = sorted(iterations)
        self.raise_on_failure = raise_on_failure
        self.seed = seed
        self.options = options
        self.reports: dict[int, GradcheckReport] = {}

    def __call__(self, iteration: int, params: Params) -> None:
        """Run the check if ``iteration`` is one of ``at`` (the parameters are restored bit for bit)."""
        if iteration not in self.at:
            return
        masks = self.net.dropout_masks(self.seed, self.m) if self.net.keep_prob < 1 else None
        report = check_network(self.net, params, self.X, self.y, masks=masks, seed=self.seed, **self.options)
        self.reports[iteration] = report
        if not report.passed:
            message = f"gradient check failed at iteration {iteration}: worst tensor {report.worst}"
            if report.hints:
                message += f"; {report.hints[0]}"
            if self.raise_on_failure:
                raise GradientCheckError(message + "\n" + str(report))
            warn(message, GradcheckWarning)
