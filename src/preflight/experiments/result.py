"""What every experiment's result shares: the text view, the notebook view and the JSON view of one set of tables.

A result names its tables once (:meth:`ResultView.tables`); ``str()`` prints them, ``_repr_html_`` shows the same
cells in a notebook (outcome words as coloured badges, a small figure where matplotlib is installed), ``repr()``
is one line, ``to_dict()`` a dict and ``to_json()`` its strict JSON text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from preflight._util import html
from preflight._util import jsonsafe as strict_json
from preflight._util.text import Table

__all__ = ["ResultView"]


class ResultView:
    """Mixin for experiment results (dataclasses declared with ``repr=False``, so this ``__repr__`` is kept)."""

    def tables(self) -> list[Table]:
        """The tables ``str()`` and the notebook show, in order."""
        raise NotImplementedError

    def headline(self) -> str:
        """The result in one line (what ``repr()`` shows)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts, lists and numbers."""
        raise NotImplementedError

    def figure(self) -> Any:
        """A matplotlib Figure for the notebook view, or None for none."""
        return None

    def plot(self, directory: Path) -> list[Path]:
        """PNG files written into ``directory`` (needs the plot extra)."""
        raise NotImplementedError

    def to_json(self, *, indent: int | None = None) -> str:
        """:meth:`to_dict` as strict JSON text (a figure that is not finite is ``null``)."""
        return strict_json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        return "\n\n".join(str(table) for table in self.tables())

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.headline()}>"

    def _repr_html_(self) -> str:
        plot = html.figure_img(self.figure, alt=type(self).__name__)
        return html.panel(type(self).__name__, "", [*html.tables_html(self.tables()), plot], subtitle=self.headline())
