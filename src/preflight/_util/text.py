"""Plain-text tables for the terminal, and the :class:`Table` that both the text and the HTML views render."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Table", "format_number", "format_table"]


def format_number(value: Any, digits: int = 4) -> str:
    """Floats to ``digits`` significant digits (scientific when tiny or huge); anything else with str().

    Examples
    --------
    >>> format_number(0.073578959), format_number(1.5e-9), format_number(3)
    ('0.07358', '1.5e-09', '3')
    """
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        return f"{value:.{digits}g}"
    return str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> str:
    """Align columns under their headers; numbers right-aligned, text left-aligned.

    Examples
    --------
    >>> print(format_table(["a", "b"], [["x", 1.0], ["yy", 22.5]]))
    a  |    b
    ---+-----
    x  |    1
    yy | 22.5
    """
    cells = [[format_number(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) for row in rows) and rows for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return " | ".join(parts).rstrip()

    out = [line(list(headers)), "-+-".join("-" * w for w in widths)] + [line(r) for r in cells]
    return "\n".join(([title, ""] if title else []) + out)


@dataclass(frozen=True)
class Table:
    """A titled table with notes under it: ``str()`` is the terminal view, :func:`preflight._util.html.html_table`
    the notebook view, so the two always show the same cells.

    Examples
    --------
    >>> print(Table(["a"], [[1.5]], title="T", notes=("n",)))
    T
    <BLANKLINE>
      a
    ---
    1.5
    n
    """

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]
    title: str | None = None
    notes: Sequence[str] = ()

    def __str__(self) -> str:
        return "\n".join([format_table(self.headers, self.rows, title=self.title), *self.notes])
