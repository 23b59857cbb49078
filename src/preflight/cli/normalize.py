"""``preflight normalize fit|apply``: learn a Standardizer from a table and save it; apply a saved one."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from preflight._util.text import format_table
from preflight.cli._common import (
    add_output_options,
    emit,
    names_standard_output,
    output_file,
    refuse_overwriting_inputs,
)
from preflight.normalize.sources import load_state, save_state
from preflight.normalize.standardizer import Standardizer
from preflight.normalize.tables import open_table, transform_table

__all__ = ["register"]


@dataclass(frozen=True)
class FitReport:
    """What ``normalize fit`` prints: one row per feature."""

    standardizer: Standardizer
    output: Path | str

    def to_dict(self) -> dict[str, Any]:
        s = self.standardizer
        mean, var = s.mean_, s.var_
        assert mean is not None and var is not None  # `normalize fit` always centers and scales
        return {
            "output": str(self.output),
            "n_samples_seen": np.asarray(s.n_samples_seen_).tolist(),
            "weighted": bool(getattr(s, "_weighted", False)),
            "features": [str(n) for n in s.get_feature_names_out()],
            "mean": mean.tolist(),
            "std": (var**0.5).tolist(),
            "scale": None if s.scale_ is None else s.scale_.tolist(),
        }

    def __str__(self) -> str:
        report = self.to_dict()
        scale = report["scale"] or [1.0] * len(report["mean"])
        rows = [
            [name, mean, std, factor, "constant: scale 1" if std != factor else ""]
            for name, mean, std, factor in zip(report["features"], report["mean"], report["std"], scale, strict=True)
        ]
        n = report["n_samples_seen"]
        seen = f"samples of total weight {n}" if report["weighted"] else f"{n} samples"
        title = f"Standardizer fitted on {seen}, saved to {self.output}"
        return format_table(["feature", "mean", "std", "scale", "note"], rows, title=title)


@dataclass(frozen=True)
class ApplyReport:
    """What ``normalize apply`` prints."""

    rows: int
    output: Path | str
    features: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "output": str(self.output), "features": self.features}

    def __str__(self) -> str:
        return f"wrote {self.rows} rows to {self.output} ({len(self.features)} features standardized)"


def register(subparsers: Any) -> None:
    """Add ``normalize fit`` and ``normalize apply``."""
    parser = subparsers.add_parser("normalize", help="standardize inputs: fit statistics on a table, apply them")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = actions.add_parser("fit", help="learn mean and std of a .csv/.npy table (read in chunks), save as JSON")
    fit.add_argument("path", type=Path, help="training table: .csv with a header row, or .npy")
    fit.add_argument("--label", help="column to leave out: a name, or a position")
    fit.add_argument("--weight", help="column of sample weights (finite, >= 0): a name, or a position")
    fit.add_argument(
        "-o", "--output", type=output_file, required=True, help="statistics file to write (JSON; - for stdout)"
    )
    fit.add_argument("--ignore-nan", action="store_true", help="leave missing values out instead of failing")
    fit.add_argument("--chunk-rows", type=int, default=65536, help="rows read at a time (default 65536)")
    fit.add_argument("--progress", action=argparse.BooleanOptionalAction, help="progress bar (default: on a tty)")
    add_output_options(fit, plot=False)
    fit.set_defaults(handler=_fit)
    apply = actions.add_parser("apply", help="standardize a table with saved statistics; other columns pass through")
    apply.add_argument("stats", type=Path, help="statistics file written by 'normalize fit'")
    apply.add_argument("path", type=Path, help="table to standardize: .csv or .npy")
    apply.add_argument(
        "-o", "--output", type=output_file, required=True, help="table to write (same format; - for stdout)"
    )
    apply.add_argument(
        "--label", help="column passed through (only needed when the statistics name no features and record no label)"
    )
    apply.add_argument("--chunk-rows", type=int, default=65536, help="rows read at a time (default 65536)")
    add_output_options(apply, plot=False)
    apply.set_defaults(handler=_apply)


def _fit(args: argparse.Namespace) -> int:
    # Standardizer.fit_file, keeping the table's layout: a .npy label's position goes into the statistics file.
    refuse_overwriting_inputs(args.output, {"training table": args.path})
    table = open_table(args.path, label=args.label, weight=args.weight, chunk_rows=args.chunk_rows)
    standardizer = Standardizer(ignore_nan=args.ignore_nan)
    standardizer.fit_chunks(table.chunks, total_rows=table.rows, progress=args.progress)
    report = _report_stream(args.output)  # before the write, which may create the file stdout is
    save_state(standardizer, args.output, label_column=table.label_column, weight_column=table.weight_column)
    return emit(FitReport(standardizer, args.output), args, stream=report)


def _apply(args: argparse.Namespace) -> int:
    if args.output != "-" and args.path.suffix.lower() != args.output.suffix.lower():
        raise ValueError(f"output: expected a {args.path.suffix} file like the input, got {args.output.name!r}")
    refuse_overwriting_inputs(args.output, {"table to standardize": args.path, "statistics file": args.stats})
    standardizer = Standardizer.load(args.stats)
    state = load_state(args.stats)
    report = _report_stream(args.output)
    rows = transform_table(
        standardizer,
        args.path,
        args.output,
        label=args.label,
        label_column=state.label_column,
        weight_column=state.weight_column,
        chunk_rows=args.chunk_rows,
    )
    features = [str(n) for n in standardizer.get_feature_names_out()]
    return emit(ApplyReport(rows, args.output, features), args, stream=report)


def _report_stream(output: Path | str) -> Any:
    """Where the report goes: stdout, unless the data does (``-o -``, ``-o /dev/stdout``): then stderr."""
    return sys.stderr if names_standard_output(output) else None
