"""The float64 look at a float32 NumPy check's failures: the same loss, at float64 copies of the same parameters.

Float32 differences can fail a correct coordinate that no reading of float32 values can clear. In a ReLU network at
batch 256, two units of a deeper layer can sit 0.01 h and 0.04 h from their kinks on either side of the point: the
slope between them (what the backward returns) differs from the slope outside (what every float32 difference reads)
by the two jumps, each far below float32's noise over the grid's finest spacing, so the closer look sees a smooth
line whose slope disagrees (tests/numpy_nets.py, ReLU 20-32-16-1 at batch 256, seed 14: W1[4, 11] analytic 6.2e-4,
numeric 8.9e-4, tolerance 1.2e-4).

A NumPy gradient comes as float32 arrays, so no float64 backward can be run. But the loss is a Python function of
the parameters, and a learner's loss of float64 parameters computes in float64 (float32 data are promoted): there,
float64 differences at steps 800 times smaller than float32's land inside such a piece and read its slope. Each
failing coordinate is judged again there, against the float32 analytic value with an allowance for its own float32
rounding (:data:`~preflight.check.verdict.ANALYTIC_FACTOR` float32 ulps of the entry and of the tensor's rms, as
the first pass allows it). A coordinate that passes there is judged by the float64 values; one the float64 kink test
sets aside is set aside; one that fails there fails, as before. The look can only clear a failure the float64 values
explain; it never fails a coordinate.

Skipped, with the float32 verdict standing, where the loss does not compute in float64 at float64 parameters (it
rounds at float32's precision: it casts inside) or raises there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from preflight.check import numdiff
from preflight.check.inputs import Leaves, measure_noise, parameter_leaves
from preflight.check.perturb import BlackBoxLoss
from preflight.check.report import label
from preflight.check.tree import widened
from preflight.check.verdict import ANALYTIC_FACTOR, TensorCheck, excess_ratio, first_pass, second_look

__all__ = ["FLOAT64_EPSILON", "Float64Copy", "float64_look"]

F64 = NDArray[np.float64]
#: A loss of float64 parameters rounds like float64 when its measured epsilon is below this (float32's is 1.2e-7).
FLOAT64_EPSILON = numdiff.COARSE_EPSILON
#: Coordinates named in the note.
NAMED = 5
#: A tensor is looked at again only with at most this many failing coordinates, or this share of those judged: the
#: kinks float32 cannot see near the point bend a few coordinates each (5 of 568 in the network above), while a
#: backward error fails many, which the float64 values would only confirm at the cost of a second check.
MAX_FAILING, MAX_SHARE = 64, 0.05


def _failing(t: TensorCheck) -> NDArray[np.intp]:
    """Rows of ``t`` (positions in ``t.index``) that fail and are not set aside; none where they are too many."""
    g = t.g.reshape(-1)[t.index]
    rows = np.flatnonzero((excess_ratio(g, t.numeric, t.tolerance) > 1.0) & ~t.kink)
    judged = int((~t.kink).sum())
    return rows if rows.size <= max(MAX_FAILING, MAX_SHARE * judged) else rows[:0]


class Float64Copy:
    """The loss at float64 copies of a float32 check's parameters, built on first use, shared by the float64 look
    and the pooled look at float64 (:func:`preflight.check.pooled.wide_pooled_look`): its leaves, black box, value
    at the point and measured noise, used only where :attr:`available` (the loss computes in float64 there: it does
    not cast inside, nor raise).

    Examples
    --------
    >>> import numpy as np
    >>> copy = Float64Copy(lambda p: float(np.sum(p["w"] ** 3)), {"w": np.float32([0.3, 0.7])}, seed=0)
    >>> copy.available, copy.leaves["w"].dtype, copy.evaluations > 0
    (True, dtype('float64'), True)
    >>> Float64Copy(lambda p: float(np.sum(np.sin(p["w"].astype(np.float32)))), {"w": np.float32([1.0])}, 0).available
    False
    """

    def __init__(self, loss: Callable[[Any], Any], params: Any, seed: int) -> None:
        self._loss, self._params, self._seed = loss, params, seed
        self._box: BlackBoxLoss | None = None
        self._ready: bool | None = None
        self.leaves: Leaves = {}
        self.f0 = self.sigma = 0.0

    @property
    def available(self) -> bool:
        """Whether the loss computes in float64 at the copies (built now if it was not)."""
        if self._ready is None:
            self._ready = False
            try:
                wide = widened(self._params)
                self.leaves = parameter_leaves(wide)
                self._box = BlackBoxLoss(self._loss, wide, self.leaves)
                self.f0 = self._box.value()
                self.sigma, rounding = measure_noise(
                    self._box.value, self.leaves, self.f0, self._seed, self._box.output_epsilon
                )
            except Exception:  # a loss that does not run at float64 parameters: the float32 verdict stands
                return False
            # A loss that rounds like float32 whatever its parameters has nothing finer to read.
            self._ready = rounding <= FLOAT64_EPSILON and bool(np.isfinite(self.sigma))
        return self._ready

    @property
    def box(self) -> BlackBoxLoss:
        """The loss at the copies (moved through :attr:`leaves`); only where :attr:`available`."""
        assert self._box is not None and self._ready
        return self._box

    @property
    def evaluations(self) -> int:
        """The loss evaluations made at the copies so far."""
        return self._box.evaluations if self._box is not None else 0


def float64_look(copy: Float64Copy, tensors: list[TensorCheck]) -> str | None:
    """Judge the failing coordinates of ``tensors`` (a float32 check, after its second look) again at the float64
    copies of its parameters, updating ``tensors`` in place; the note saying what it did, or None.

    Examples
    --------
    >>> import numpy as np
    >>> from preflight.check.verdict import TensorCheck
    >>> w = np.array([0.3, 0.7], np.float32)
    >>> loss = lambda p: float(np.sum(p["w"] ** 3))
    >>> t = TensorCheck("w", w, np.arange(2), 3 * w.astype(np.float64) ** 2)
    >>> t.numeric, t.tolerance, t.kink = 3 * w.astype(np.float64) ** 2, np.full(2, 1e-3), np.zeros(2, bool)
    >>> t.numeric[1] += 0.01                       # as if float32 differences had read 0.01 off at w[1]
    >>> print(float64_look(Float64Copy(loss, {"w": w}, 0), [t])[:60])
    1 coordinate(s) that float32 differences failed pass at floa
    """
    failing = {t.name: _failing(t) for t in tensors}
    if not any(rows.size for rows in failing.values()) or not copy.available:
        return None
    leaves, box, f0, sigma = copy.leaves, copy.box, copy.f0, copy.sigma
    looks = [TensorCheck(t.name, leaves[t.name], t.index[rows], t.g) for t in tensors if (rows := failing[t.name]).size]
    first_pass(looks, box, f0, sigma, "central", None, box.output_epsilon)
    cleared, set_aside = [], 0
    by_name = {t.name: t for t in tensors}
    for look in looks:
        look.kink = np.zeros(look.index.size, dtype=bool)
        second_look(look, box, f0, sigma)
        t = by_name[look.name]
        rows = failing[t.name]
        g = t.g.reshape(-1)
        rms = float(np.sqrt(np.mean(g**2))) if g.size else 0.0
        a = g[look.index]
        # The float32 analytic value's own rounding, as the first pass allows it in float32.
        allowance = ANALYTIC_FACTOR * numdiff.machine_epsilon(t.arr.dtype) * (np.abs(a) + rms)
        passes = ~look.kink & (np.abs(a - look.numeric) <= look.tolerance + allowance)
        t.numeric[rows[passes]] = look.numeric[passes]
        t.tolerance[rows[passes]] = look.tolerance[passes] + allowance[passes]
        t.kink[rows[look.kink]] = True
        set_aside += int(look.kink.sum())
        cleared += [label(t.name, t.arr.shape, int(k)) for k in look.index[passes]]
    if not cleared and not set_aside:
        return None
    named = ", ".join(cleared[:NAMED]) + (", ..." if len(cleared) > NAMED else "")
    note = (
        f"{len(cleared)} coordinate(s) that float32 differences failed pass at float64 copies of the parameters "
        f"(the loss computes in float64 there; float64 differences read slopes float32's cannot, such as between "
        f"kinks closer to the point than float32 resolves){': ' + named if cleared else ''}"
        + (f"; {set_aside} set aside there as kinks" if set_aside else "")
    )
    return note
