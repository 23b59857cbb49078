"""The work of ``check_function``: outputs' noise, moved evaluations per input element, autograd's rows and columns.

One :class:`FunctionCheck` per call. The Jacobian block of each checked input is judged by
:func:`preflight.check.jacobian.judge_entries` on the elements that can be moved: an element that is not finite gets
no step, and the steps are chosen per element by :mod:`preflight.check.function_steps` (inside the function's
domain, small enough to settle). Elements left out are *skipped*: not judged, not kinks, named in a note.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from preflight.check.diagnosis import TensorEvidence
from preflight.check.function_judge import judge_block
from preflight.check.function_noise import default_steps, probe_noise, row_grids
from preflight.check.function_report import block_evidence
from preflight.check.function_steps import Block, Verdict, build_block
from preflight.torch._function_ad import forward_columns, reverse_rows
from preflight.torch._function_io import RealFunction

__all__ = ["FunctionCheck", "Stopped"]

A = NDArray[Any]
F64 = NDArray[np.float64]


class Stopped(Exception):
    """The check cannot go on (an output not finite at the inputs, a random function): the report's ``stopped``."""


class FunctionCheck:
    """The state of one ``check_function`` call (see the module docstring)."""

    #: Look for stairs behind a settled failure against the noise along its element
    #: (:func:`preflight.check.function_judge.judge_block`).
    stairs_behind = True

    def __init__(self, fn: Callable[..., Any], inputs: Sequence[Any], positions: list[int], limit: int, seed: int):
        self.io = RealFunction(fn, inputs, positions)
        self.positions, self.seed = positions, seed
        self.notes = self.io.notes
        self.evaluations = 0
        m = self.io.size
        self.entries = m * sum(self.io.inputs[i].numel() for i in positions)
        self.identity = m <= limit
        self.out_index = (
            [(k, *idx) for k, s in enumerate(self.io.shapes) for idx in np.ndindex(*s)] if self.identity else []
        )
        self.noise = 0.0
        if self.entries == 0:
            return
        with torch.no_grad():
            self.first, self.second = self.outputs(self.io.inputs), self.outputs(self.io.inputs)
        if self.identity:
            self.project = torch.eye(m, dtype=torch.float64)
        else:
            generator = torch.Generator().manual_seed(seed)
            self.project = torch.randn(16, m, generator=generator, dtype=torch.float64)
            self.notes.append(f"{m} output elements: checked through 16 random projections of the output")
        self.v = np.random.default_rng(seed).standard_normal(len(self.project))
        self.f0 = (self.project.numpy() @ self.first.numpy())[:, None]
        # Rounding: of the checked inputs' dtype, and of the outputs' own (a function that casts to float32 rounds
        # like float32 whatever its inputs).
        self.output_epsilon = max(float(torch.finfo(d).eps) for d in self.io.dtypes)
        self.input_epsilon = max(float(torch.finfo(self.io.inputs[i].dtype).eps) for i in positions)
        self.sigma = np.zeros_like(self.f0)
        #: Each output row's stairs, where the noise probe crossed some (:meth:`measure_noise`), 0 elsewhere: for the
        #: smoothness tests of the smaller steps (:mod:`preflight.check.function_judge`).
        self.probe_quantum = np.zeros_like(self.f0)
        #: Each output row's grid where it rounds coarser than its measured noise (:meth:`read_quanta`).
        self.quantum: F64 | None = None
        #: How many entries of each row show its grid (:func:`preflight.check.quanta.showing_quanta`).
        self.showing: NDArray[np.int_] | None = None

    def shape(self, i: int) -> tuple[int, ...]:
        """The checked (real) shape of input i: a complex input's with its trailing real/imaginary index."""
        return tuple(self.io.inputs[i].shape)

    def outputs(self, values: list[Any]) -> torch.Tensor:
        self.evaluations += 1
        return self.io.flat(values)

    def require_usable(self) -> None:
        """Stopped when two calls differ (NaN equal to NaN) or an output is not finite at the given inputs."""
        if self.first.shape != self.second.shape:
            raise Stopped("the function is random: two calls with the same inputs return outputs of different sizes")
        differ = (self.first != self.second) & ~(self.first.isnan() & self.second.isnan())
        if bool(differ.any()):
            where = self.io.output_element(int(torch.nonzero(differ)[0, 0]))
            raise Stopped(
                f"the function is random: two calls with the same inputs differ (first at {where}); seed it or pass "
                "the random draw in as an input"
            )
        bad = ~self.first.isfinite()
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0, 0])
            raise Stopped(
                f"the output is not finite at the given inputs: {self.io.output_element(first)} is "
                f"{float(self.first[first])} ({int(bad.sum())} of {bad.numel()} output elements not finite); "
                "a gradient check needs inputs inside the function's domain"
            )

    def locator(self, i: int) -> Callable[[int], tuple[tuple[int, ...], tuple[int, ...] | None]]:
        shape = self.shape(i)
        n = max(1, int(np.prod(shape)))

        def where(flat: int) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
            row, col = divmod(flat, n)
            index = tuple(int(v) for v in np.unravel_index(col, shape)) if shape else ()
            return index, (tuple(int(v) for v in self.out_index[row]) if self.identity else None)

        return where

    def measure_noise(self) -> None:
        """The rounding noise of each output row, measured, and the stairs its probe crossed
        (:func:`preflight.check.function_noise.probe_noise`)."""
        points = [self.io.inputs[i].detach().double().numpy() for i in self.positions]

        def rows_at(moved: list[F64]) -> F64:
            args = list(self.io.inputs)
            for i, m in zip(self.positions, moved, strict=True):
                args[i] = torch.from_numpy(m).to(self.io.inputs[i].dtype)
            with torch.no_grad():
                out: F64 = (self.project @ self.outputs(args)).numpy()
            return out

        epsilon = max(self.input_epsilon, self.output_epsilon)
        self.sigma, self.probe_quantum = probe_noise(
            rows_at, points, self.f0, epsilon=epsilon, output_epsilon=self.output_epsilon, seed=self.seed
        )
        self.noise = float(np.max(self.sigma)) if self.sigma.size else 0.0

    def _moved(self, i: int, h: F64, scale: float, elements: NDArray[np.intp]) -> tuple[F64, F64, NDArray[np.bool_]]:
        """Rows at ``scale x h`` for each element of input i: values (R, k), the moves made, whether finite."""
        x = self.io.inputs[i]
        flat = x.detach().reshape(-1).double().numpy()
        work = x.clone()
        view = work.view(-1)
        args = [work if j == i else v for j, v in enumerate(self.io.inputs)]
        columns, moves, finite = [], [], []
        with torch.no_grad():
            for e in elements.tolist():
                old = view[e].clone()
                view[e] = torch.tensor(float(flat[e]) + scale * float(h[e]), dtype=torch.float64)
                moves.append(float(view[e].double() - old.double()))
                try:
                    out = self.outputs(args)
                finally:
                    view[e] = old
                finite.append(bool(out.isfinite().all()))
                columns.append(self.project @ out)
        values = torch.stack(columns, dim=1).numpy() if columns else np.zeros((len(self.project), 0))
        return values, np.array(moves, dtype=np.float64), np.array(finite, dtype=bool)

    def columns(self, i: int, label: str, eps: float | None, richardson: bool) -> Block:
        """Rows at +-h (and +-2h with ``richardson``) for every finite element of input i (steps inside the
        function's domain: :func:`preflight.check.function_steps.build_block`); more positions on demand."""
        x = self.io.inputs[i]
        point = x.detach().reshape(-1).numpy()
        epsilon = float(torch.finfo(x.dtype).eps)
        h = default_steps(point, eps, epsilon=epsilon, output_epsilon=self.output_epsilon)

        def move(steps: F64, scale: float, elements: NDArray[np.intp]) -> tuple[F64, F64, NDArray[np.bool_]]:
            return self._moved(i, steps, scale, elements)

        scales = (1.0, -1.0, 2.0, -2.0) if richardson else (1.0, -1.0)
        return build_block(label, self.shape(i), point.astype(np.float64), h, move, scales,
                           (self.f0, self.sigma, epsilon), self.notes, self.probe_quantum,
                           max(epsilon, self.output_epsilon))  # fmt: skip

    def read_quanta(self, blocks: dict[int, Block]) -> None:
        """Each output row's grid, from what every input's first look shows (:mod:`preflight.check.quanta`): a level
        in one of its entries, or whole multiples shared by several; a row is one output element, whichever input
        moves it."""
        self.quantum, self.showing = row_grids(list(blocks.values()), self.sigma)

    def judge(self, block: Block, analytic: A) -> tuple[F64, Verdict]:
        """The verdict on one input's block (:func:`preflight.check.function_judge.judge_block`)."""
        return judge_block(block, analytic, self.quantum, self.showing, self.stairs_behind)

    def judge_backward(self, block: Block, rows: tuple[A, A | None]) -> tuple[F64, Verdict]:
        """The verdict on the backward of all outputs together; where the outputs' backwards taken one at a time
        (``rows[1]``, each without the others' gradients) fail and the joint one does not, theirs."""
        joint, alone = rows
        a, verdict = self.judge(block, joint)
        if alone is None or np.array_equal(alone, joint, equal_nan=True):
            return a, verdict
        a_alone, lone = self.judge(block, alone)
        use = lone.bad & ~verdict.bad
        if not use.any():
            return a, verdict
        if self.identity:
            outputs = sorted({self.out_index[r][0] for r in np.flatnonzero(use.any(axis=1)).tolist()})
            which = f"output(s) {', '.join(map(str, outputs))}"
        else:
            which = "the outputs"
        self.notes.append(
            f"{block.label}: the backward of {which} taken alone (the other outputs without a gradient) disagrees "
            "with the differences, where the backward of all outputs together agrees"
        )
        merged = [np.where(use, x, y) for x, y in zip(
            (lone.numeric, lone.tolerance, lone.kink), (verdict.numeric, verdict.tolerance, verdict.kink), strict=True
        )]  # fmt: skip
        bad = verdict.bad | lone.bad
        return np.where(use, a_alone, a), Verdict(
            merged[0], merged[1], bad, merged[2] & ~bad, verdict.skip, verdict.tried, verdict.not_resolved & ~bad
        )

    def evidence(self, label: str, i: int, a: F64, v: Verdict) -> TensorEvidence:
        """What the hints read: the gradient of <v, outputs> for one random v, in the input's shape (a transposed
        gradient shows there), with the tolerance |v| @ tolerance that the entries' own tolerances give it."""
        theta = self.io.inputs[i].detach().double().reshape(-1).numpy()
        return block_evidence(label, self.shape(i), theta, self.v, a, v)

    def analytic(self) -> dict[int, tuple[A, A | None]]:
        """Rows ``P @ J`` per checked input (P the identity or random projections) by reverse-mode AD: of all
        outputs together, and (with several outputs) summed over the outputs' backwards taken one at a time."""
        return reverse_rows(self.io, self.project, self.positions)

    def forward(
        self, blocks: dict[int, Block], labels: list[str], wanted: bool | None
    ) -> dict[str, tuple[int, F64, Verdict]] | None:
        """Columns ``P @ J e_j`` by forward-mode AD, judged against the same differences; None where undefined."""
        if wanted is False:
            return None
        results = {}
        try:
            for label, i in zip(labels, self.positions, strict=True):
                a = forward_columns(self.io, self.project, i, blocks[i].usable)
                results[label] = (i, *self.judge(blocks[i], a))
        except (RuntimeError, NotImplementedError) as exc:
            reason = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
            self.notes.append(f"forward-mode AD not checked: not defined for this function ({reason})")
            if wanted:
                raise ValueError(f"forward_ad: forward-mode AD is not defined for this function ({reason})") from None
            return None
        return results
