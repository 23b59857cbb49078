"""Health over time for the reference network: a callback for :meth:`preflight.nn.Network.fit`.

Every ``every`` iterations it runs the one-point diagnosis (:func:`preflight.propagation.analyze`) on a fixed batch
and hands the per-layer figures to a :class:`Timeline`; at the next iteration it measures the update the step made,
``|W_after - W_before| / |W_before|``. The parameters are checked for NaN and infinity at every iteration (one pass
over them, far cheaper than the step); the first non-finite value is located layer by layer. It lives here rather
than beside :class:`preflight.nn.GradcheckCallback` because the verdicts it uses sit in this folder, above ``nn``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from preflight._util.aliases import Params
from preflight._util.validation import check_array, check_positive_int
from preflight._util.warn import warn as issue_warning
from preflight.nn.network import Network
from preflight.propagation.analysis import analyze
from preflight.propagation.health import HealthReport
from preflight.propagation.report import PropagationWarning, Thresholds
from preflight.propagation.stats import norm, ratio
from preflight.propagation.timeline import MAX_UPDATE_RATIO, HealthVerdict, HealthWarning, Timeline

__all__ = ["HealthCallback"]

#: LayerStats fields copied into the history as they are.
_COPIED = (
    "mean",
    "std",
    "pre_rms",
    "saturated_fraction",
    "dead_fraction",
    "delta_norm",
    "activation_grad_norm",
    "weight_grad_norm",
    "forward_ratio",
    "backward_ratio",
)


class HealthCallback:
    """Watch a :meth:`Network.fit` run layer by layer (``callbacks=[HealthCallback(...)]``) and say what went wrong,
    when, and what to do.

    Parameters
    ----------
    net : Network
        The network being trained.
    X, y : array-like
        The batch the diagnosis runs on (its first ``batch`` rows), the same at every monitored iteration.
    every : int
        Diagnose at iterations 0, every, 2 every, ...
    batch : int
        Rows of ``X`` used.
    thresholds, max_update_ratio, patience
        As in :class:`Timeline`.
    learning_rate : float, optional
        The learning rate given to ``fit``, quoted when a verdict follows large updates.
    warn : bool
        Issue a :class:`HealthWarning` when a verdict begins to count.

    Examples
    --------
    >>> net = Network([8, 32, 32, 32, 3], hidden="relu", output="softmax")
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.standard_normal((128, 8)), rng.integers(0, 3, 128)
    >>> health = HealthCallback(net, X, y, every=20)
    >>> _ = net.fit(net.init(0, "he"), X, y, learning_rate=0.05, iterations=200, callbacks=[health])
    >>> health.report()
    HealthReport(200 steps, every 20, 4 layers: healthy)
    """

    def __init__(
        self,
        net: Network,
        X: Any,
        y: Any,
        *,
        every: int = 50,
        batch: int = 256,
        thresholds: Thresholds | None = None,
        max_update_ratio: float = MAX_UPDATE_RATIO,
        patience: int = 2,
        learning_rate: float | None = None,
        warn: bool = True,
    ) -> None:
        if not isinstance(net, Network):
            raise ValueError(f"net: expected a preflight.nn.Network, got {type(net).__name__}")
        self.net = net
        X = check_array(X, name="X", ndim=2)
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != X.shape[0]:
            raise ValueError(f"y: expected {X.shape[0]} labels (one per row of X), got shape {y.shape}")
        batch = check_positive_int(batch, name="batch")
        self.X, self.y = X[:batch], y[:batch]
        self.every = check_positive_int(every, name="every")
        self.timeline = Timeline(thresholds, max_update_ratio=max_update_ratio, patience=patience)
        self.learning_rate = learning_rate
        self.warn = warn
        self.steps = 0
        self._pending: tuple[int, list[dict[str, Any]], dict[str, Any]] | None = None

    def __call__(self, iteration: int, params: Params) -> None:
        """Finish the previous monitored iteration's record, check for non-finite values, diagnose if it is time."""
        self.steps = max(self.steps, iteration)
        if self._pending is not None and iteration > self._pending[0]:
            self._flush(params if iteration == self._pending[0] + 1 else None)
        finite = all(bool(np.isfinite(value).all()) for value in params.values())
        if not finite and self.timeline.nonfinite is None:
            self._announce([self.timeline.record_nonfinite(iteration, *self._locate(params, []))])
        if iteration % self.every == 0:
            rows = self._diagnose(params) if finite else self._nonfinite_rows()
            if self.timeline.nonfinite is None and any(row["nonfinite"] for row in rows):
                self._announce([self.timeline.record_nonfinite(iteration, *self._locate(params, rows))])
            if self.learning_rate is not None:
                self.timeline.history.learning_rates[iteration] = float(self.learning_rate)
            weights = {f"W{k}": params[f"W{k}"].copy() for k in range(1, self.net.depth + 1)} if finite else {}
            self._pending = (iteration, rows, weights)

    def report(self) -> HealthReport:
        """The verdicts so far (an iteration diagnosed but not yet followed by an update is recorded without its
        update ratio)."""
        if self._pending is not None:
            self._flush(None)
        return HealthReport.from_timeline(self.timeline, steps=self.steps, every=self.every)

    def _diagnose(self, params: Params) -> list[dict[str, Any]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PropagationWarning)
            with np.errstate(all="ignore"):
                stats = analyze(self.net, params, self.X, self.y, thresholds=self.timeline.thresholds, warn=False)
        rows = []
        for s in stats.layers:
            row: dict[str, Any] = {"layer": s.layer, "name": f"W{s.layer}", "activation": s.activation}
            row.update({key: getattr(s, key) for key in _COPIED})
            row["weight_norm"] = norm(params[f"W{s.layer}"])
            row["nonfinite"] = not all(math.isfinite(v) for key in _COPIED if isinstance(v := row[key], float))
            rows.append(row)
        return rows

    def _nonfinite_rows(self) -> list[dict[str, Any]]:
        hidden = [*self.net.hidden, "logits"]
        return [
            {"layer": k, "name": f"W{k}", "activation": hidden[k - 1], "nonfinite": True}
            for k in range(1, self.net.depth + 1)
        ]

    def _flush(self, after: Params | None) -> None:
        assert self._pending is not None
        step, rows, before = self._pending
        self._pending = None
        for row in rows:
            name = row["name"]
            if after is not None and name in before:
                row["update_ratio"] = ratio(norm(after[name] - before[name]), norm(before[name]))
        self._announce(self.timeline.observe(step, rows))

    def _locate(self, params: Params, rows: list[dict[str, Any]]) -> tuple[str, tuple[int, ...]]:
        """The first layer whose parameters, or else whose pre-activations on the batch, or else whose figures (a
        gradient norm that overflowed) are not finite."""
        for k in range(1, self.net.depth + 1):
            for name in (f"W{k}", f"b{k}"):
                if name in params and not np.isfinite(params[name]).all():
                    return f"layer {k} parameters ({name})", (k,)
        with np.errstate(all="ignore"):
            trace = self.net.trace(params, self.X)
        for k, z in enumerate(trace.logits, start=1):
            if not np.isfinite(z).all():
                return f"layer {k} pre-activations (Z{k})", (k,)
        k = next((row["layer"] for row in rows if row["nonfinite"]), 0)
        return f"layer {k} gradients (parameters and pre-activations finite)", (k,)

    def _announce(self, verdicts: Sequence[HealthVerdict | None]) -> None:
        if self.warn:
            for verdict in verdicts:
                if verdict is not None:
                    issue_warning(f"{verdict.message}; fix: {verdict.fix}", HealthWarning)
