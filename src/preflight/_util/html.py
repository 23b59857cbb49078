"""HTML for notebooks and the report: tables, verdict badges, outcome colours, inline figures.

One place for every ``_repr_html_`` in preflight (propagation reports, experiment results, the Standardizer, the
tour, gradient-check reports), so a verdict has the same colour everywhere. Styles are inline: Jupyter, VS Code and
GitHub's notebook viewer drop or scope ``<style>`` blocks differently, inline styles survive all of them.

Colours by *outcome*, never by whether a demonstration went to plan: "vanishing" is red even where the point of the
demonstration was to show a vanishing network (the report shows "behaved as expected" apart, with a check mark).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from preflight._util.text import Table, format_number

__all__ = [
    "OUTCOME_TONES",
    "TONE_COLOURS",
    "Tone",
    "badge",
    "details",
    "escape",
    "figure_img",
    "html_table",
    "outcome_tone",
    "panel",
    "png_img",
    "preformatted",
    "tables_html",
]

Tone = Literal["good", "warn", "bad", "neutral"]

#: Outcome word (lower case) -> tone. A word not listed is neutral.
OUTCOME_TONES: dict[str, Tone] = {
    "healthy": "good",
    "ok": "good",
    "passed": "good",
    "converged": "good",
    "reached": "good",
    "fitted": "good",
    "saturated": "bad",
    "vanishing": "bad",
    "exploding": "bad",
    "dead": "bad",
    "fail": "bad",
    "failed": "bad",
    "bug": "bad",
    "diverged": "bad",
    "not reached": "bad",
    "stuck": "bad",
    "constant": "warn",
    "kinks": "warn",
    "not fitted": "neutral",
}

#: Tone -> (background, text colour): the pairs have a contrast ratio above 7 (WCAG AAA for normal text).
TONE_COLOURS: dict[str, tuple[str, str]] = {
    "good": ("#d9f2dd", "#14532d"),
    "warn": ("#fdf0c8", "#713f12"),
    "bad": ("#fde2e1", "#7f1d1d"),
    "neutral": ("#e8e8ec", "#27272a"),
}

_CELL = "padding:2px 8px;border-bottom:1px solid #e4e4e7;"
_MONO = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;"


def escape(text: Any) -> str:
    """``str(text)`` with ``& < > " '`` escaped.

    Examples
    --------
    >>> escape("a < b")
    'a &lt; b'
    """
    return html.escape(str(text))


def outcome_tone(word: Any) -> Tone:
    """The tone of an outcome word (case and surrounding spaces ignored); neutral when it is not one.

    Examples
    --------
    >>> outcome_tone("Healthy"), outcome_tone("vanishing"), outcome_tone("FAIL"), outcome_tone("relu")
    ('good', 'bad', 'bad', 'neutral')
    """
    return OUTCOME_TONES.get(str(word).strip().lower(), "neutral")


def badge(text: Any, tone: Tone | None = None) -> str:
    """A rounded label coloured by ``tone`` (default: the tone of ``text`` as an outcome word).

    Examples
    --------
    >>> badge("vanishing")  # doctest: +ELLIPSIS
    '<span style="...background:#fde2e1;color:#7f1d1d...">vanishing</span>'
    """
    background, colour = TONE_COLOURS[tone or outcome_tone(text)]
    style = f"display:inline-block;padding:0 .5em;border-radius:.3em;font-weight:600;background:{background};"
    return f'<span style="{style}color:{colour}">{escape(text)}</span>'


def _cell(value: Any, numeric: bool, header: bool = False) -> str:
    tag = "th" if header else "td"
    align = "right" if numeric else "left"
    text = format_number(value)
    content = badge(text) if not header and outcome_tone(text) != "neutral" else escape(text)
    return f'<{tag} style="{_CELL}text-align:{align}">{content}</{tag}>'


def html_table(table: Table, *, max_rows: int | None = None) -> str:
    """The table as HTML: the same cells as ``str(table)``, outcome words as coloured badges.

    ``max_rows`` keeps the first rows and says how many were left out.

    Examples
    --------
    >>> t = Table(["layer", "verdict"], [[1, "healthy"], [2, "vanishing"]], title="demo")
    >>> page = html_table(t)
    >>> page.count("<tr>"), "#fde2e1" in page
    (3, True)
    """
    rows = list(table.rows)
    shown = rows if max_rows is None else rows[:max_rows]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(table.headers))]
    parts = []
    if table.title:
        parts.append(f'<div style="font-weight:600;margin:.4em 0">{escape(table.title)}</div>')
    parts.append(f'<table style="border-collapse:collapse;{_MONO}font-size:12px">')
    parts.append("<tr>" + "".join(_cell(h, n, header=True) for h, n in zip(table.headers, numeric, strict=True)))
    parts.extend("<tr>" + "".join(_cell(v, n) for v, n in zip(r, numeric, strict=True)) for r in shown)
    parts.append("</table>")
    if len(shown) < len(rows):
        parts.append(f'<div style="color:#52525b">... {len(rows) - len(shown)} more rows (str() shows all)</div>')
    parts.extend(f'<div style="color:#3f3f46;margin-top:.3em">{escape(note)}</div>' for note in table.notes)
    return "\n".join(parts)


def preformatted(text: str) -> str:
    """Monospace text (tables keep their columns): a line longer than the cell scrolls inside its own block.

    Examples
    --------
    >>> preformatted("a  b")  # doctest: +ELLIPSIS
    '<pre style="...overflow-x:auto...">a  b</pre>'
    """
    style = f"{_MONO}font-size:12px;white-space:pre;overflow-x:auto;margin:.3em 0"
    return f'<pre style="{style}">{escape(text)}</pre>'


def details(summary: str, body: str, *, open_: bool = False) -> str:
    """A collapsible block; ``summary`` is plain text, ``body`` is HTML.

    Examples
    --------
    >>> details("more", "<b>x</b>")
    '<details><summary>more</summary><b>x</b></details>'
    """
    return f"<details{' open' if open_ else ''}><summary>{escape(summary)}</summary>{body}</details>"


def png_img(png: bytes, *, alt: str, width: int | None = None) -> str:
    """An ``<img>`` with the PNG embedded (base64), so the HTML needs no file beside it.

    Examples
    --------
    >>> png_img(b"\\x89PNG", alt="demo")
    '<img alt="demo" style="max-width:100%" src="data:image/png;base64,iVBORw==">'
    """
    size = f' width="{width}"' if width else ""
    encoded = base64.b64encode(png).decode("ascii")
    return f'<img alt="{escape(alt)}"{size} style="max-width:100%" src="data:image/png;base64,{encoded}">'


def figure_img(draw: Any, *, alt: str, dpi: int = 72) -> str:
    """``draw()`` returns a matplotlib Figure (or None); its PNG as an ``<img>``, "" without one or without matplotlib.

    For the small inline plot of a ``_repr_html_``: matplotlib is optional (extra ``plot``), and a notebook
    without it still gets the table.
    """
    from preflight._util.figures import has_matplotlib, png_bytes

    figure = draw() if has_matplotlib() else None
    return "" if figure is None else png_img(png_bytes(figure, dpi=dpi), alt=alt)


def panel(title: str, status: str, body: Iterable[str], *, subtitle: str = "") -> str:
    """The frame every ``_repr_html_`` shares: a title line with its status badge(s), then the body blocks.

    Examples
    --------
    >>> page = panel("PropagationReport", badge("healthy"), ["<p>x</p>"])
    >>> page.startswith("<div") and "PropagationReport" in page
    True
    """
    head = f'<span style="font-weight:700;margin-right:.6em">{escape(title)}</span>{status}'
    if subtitle:
        head += f' <span style="color:#52525b;margin-left:.6em">{escape(subtitle)}</span>'
    style = "border:1px solid #d4d4d8;border-radius:6px;padding:8px 12px;margin:4px 0;max-width:100%;overflow-x:auto"
    return f'<div style="{style}"><div style="margin-bottom:.4em">{head}</div>{"".join(body)}</div>'


def tables_html(tables: Sequence[Table], *, max_rows: int | None = None) -> list[str]:
    """Each table through :func:`html_table`, separated by a little space."""
    return [f'<div style="margin:.5em 0">{html_table(t, max_rows=max_rows)}</div>' for t in tables]
