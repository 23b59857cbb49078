"""The raw history of a training run's health: one row of per-layer summaries per monitored step, never a tensor.

Rows are kept column by column as Python floats (a few hundred bytes per layer and monitored step: 2,000 monitored
steps of a 20-layer network hold about 40,000 rows, ~6 MB), so memory grows with the number of monitored steps,
not with the size of the network or of its batches.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from preflight._util.files import atomic_write_text
from preflight._util.optional import require

__all__ = ["COLUMNS", "STATISTICS", "HealthHistory"]

#: Per-layer statistics of one monitored step (``None`` where a figure does not apply or was not measured):
#: the activations' mean and std, rms of the pre-activations, the saturated (tanh/sigmoid) and dead (ReLU family)
#: fractions, the norms of dL/dZ, dL/dA, the weight and its gradient, the update/weight ratio |delta W| / |W| of
#: the step, the forward and backward ratios of the one-point diagnosis (preflight.propagation.analysis).
STATISTICS: tuple[str, ...] = (
    "mean",
    "std",
    "pre_rms",
    "saturated_fraction",
    "dead_fraction",
    "delta_norm",
    "activation_grad_norm",
    "weight_norm",
    "weight_grad_norm",
    "update_ratio",
    "forward_ratio",
    "backward_ratio",
)
#: Every column of the history, in order: where and when, the statistics, whether a non-finite value was seen in
#: the layer at that step, and the layer's verdict at that step (the one-point rule, or "nonfinite", or "n/a").
COLUMNS: tuple[str, ...] = ("step", "layer", "name", "activation", *STATISTICS, "nonfinite", "verdict")


class HealthHistory:
    """Per-layer summaries by monitored step, and per-step figures (loss, learning rate) where they were given.

    Examples
    --------
    >>> history = HealthHistory()
    >>> history.append({"step": 0, "layer": 1, "name": "0", "activation": "relu", "std": 0.8, "verdict": "healthy"})
    >>> len(history), history.column("std"), history.column("mean")
    (1, [0.8], [None])
    """

    def __init__(self) -> None:
        self._columns: dict[str, list[Any]] = {name: [] for name in COLUMNS}
        #: Step -> loss, and step -> learning rate, for the steps where they were known.
        self.losses: dict[int, float] = {}
        self.learning_rates: dict[int, float] = {}

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one layer's row; a missing column is None, a column not in :data:`COLUMNS` a ValueError."""
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise ValueError(f"row: expected columns among {list(COLUMNS)}, got {unknown}")
        for name in COLUMNS:
            value = row.get(name)
            self._columns[name].append(float(value) if isinstance(value, float) else value)

    def __len__(self) -> int:
        return len(self._columns["step"])

    def column(self, name: str) -> list[Any]:
        """One column, as a new list."""
        if name not in self._columns:
            raise ValueError(f"name: expected one of {list(COLUMNS)}, got {name!r}")
        return list(self._columns[name])

    def rows(self) -> Iterator[dict[str, Any]]:
        """The rows as dicts, in the order they were added."""
        for i in range(len(self)):
            yield {name: values[i] for name, values in self._columns.items()}

    @property
    def steps(self) -> list[int]:
        """The monitored steps, in order, each once."""
        return sorted(set(self._columns["step"]))

    @property
    def layers(self) -> list[int]:
        """The layer numbers seen, in order."""
        return sorted(set(self._columns["layer"]))

    def grid(self, statistic: str) -> tuple[list[int], list[int], list[list[float]]]:
        """``(layers, steps, values)`` with ``values[i][j]`` the statistic of ``layers[i]`` at ``steps[j]`` (NaN
        where it was not measured or does not apply): what a heat map of layers x steps shows.

        Examples
        --------
        >>> history = HealthHistory()
        >>> for step in (0, 50):
        ...     history.append({"step": step, "layer": 1, "std": 1.0 + step})
        >>> history.grid("std")
        ([1], [0, 50], [[1.0, 51.0]])
        """
        if statistic not in STATISTICS:
            raise ValueError(f"statistic: expected one of {list(STATISTICS)}, got {statistic!r}")
        layers, steps = self.layers, self.steps
        column_of = {step: j for j, step in enumerate(steps)}
        row_of = {layer: i for i, layer in enumerate(layers)}
        values = [[math.nan] * len(steps) for _ in layers]
        columns = (self._columns["step"], self._columns["layer"], self._columns[statistic])
        for step, layer, value in zip(*columns, strict=True):
            if value is not None:
                values[row_of[layer]][column_of[step]] = float(value)
        return layers, steps, values

    def to_csv(self, path: str | Path | None = None) -> str:
        """The rows as CSV (a header, then one line per layer and monitored step; empty where None).

        With ``path``, also written there atomically. Returns the text.

        Examples
        --------
        >>> history = HealthHistory()
        >>> history.append({"step": 0, "layer": 1, "std": 0.5, "nonfinite": False})
        >>> history.to_csv().splitlines()[1]
        '0,1,,,,0.5,,,,,,,,,,,False,'
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.rows():
            writer.writerow(["" if row[name] is None else row[name] for name in COLUMNS])
        text = buffer.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def to_frame(self) -> Any:
        """The rows as a pandas DataFrame (extra ``data``), one column per name in :data:`COLUMNS`, with the loss
        and learning rate of each row's step where they were given."""
        pandas = require("pandas", extra="data", purpose="HealthHistory.to_frame")
        frame = pandas.DataFrame({name: list(values) for name, values in self._columns.items()})
        frame["loss"] = [self.losses.get(step, math.nan) for step in self._columns["step"]]
        frame["learning_rate"] = [self.learning_rates.get(step, math.nan) for step in self._columns["step"]]
        return frame
