"""A self-contained HTML report: figures embedded as base64 PNG, no external assets, readable offline.

Each section shows its findings as a small table with two separate meanings: the *outcome* of a demonstration
(healthy, vanishing, a bug caught, ...) as a badge coloured by what the outcome is, and whether the demonstration
*behaved as expected* (the lesson holds) as a check mark with a caption. A vanishing network shown on purpose is
red and ticked; a healthy one that should have vanished would be green and crossed.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from preflight._util.html import Tone, badge, outcome_tone

__all__ = ["Finding", "Section", "render_findings", "render_html", "render_text"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #bbb; }
div.text { background: #f6f6f6; padding: .8rem; margin: 1rem 0; }
div.text pre { margin: 0; font-size: .85rem; }
div.text pre + pre { margin-top: 1em; }
pre.prose { white-space: pre-wrap; overflow-wrap: anywhere; }
pre.table { white-space: pre; overflow-x: auto; scrollbar-width: thin; scrollbar-color: #71717a #e4e4e7;
  background: linear-gradient(to right, #f6f6f6 30%, rgba(246, 246, 246, 0)),
    linear-gradient(to right, rgba(246, 246, 246, 0), #f6f6f6 70%) 100% 0,
    radial-gradient(farthest-side at 0 50%, rgba(0, 0, 0, .3), rgba(0, 0, 0, 0)),
    radial-gradient(farthest-side at 100% 50%, rgba(0, 0, 0, .3), rgba(0, 0, 0, 0)) 100% 0;
  background-repeat: no-repeat; background-size: 40px 100%, 40px 100%, 14px 100%, 14px 100%;
  background-attachment: local, local, scroll, scroll; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; margin: .5rem 0; }
table.findings { border-collapse: collapse; margin: .6rem 0; }
table.findings td, table.findings th { padding: .2rem .7rem; border-bottom: 1px solid #e4e4e7; text-align: left; }
table.findings th { font-weight: 600; color: #3f3f46; }
.expected { color: #14532d; } .unexpected { color: #7f1d1d; font-weight: 700; }
.legend { color: #52525b; font-size: .9rem; }
"""

_LEGEND = (
    "Outcome badges are coloured by what happened (green: healthy, passed, converged; red: vanishing, saturated, "
    "a bug, not converged), not by whether the demonstration went to plan; the last column says whether it did."
)


@dataclass(frozen=True)
class Finding:
    """One demonstration: its ``subject``, its ``outcome`` (coloured by ``tone``) and whether the lesson held.

    ``tone`` defaults to the tone of ``outcome`` as an outcome word (:func:`preflight._util.html.outcome_tone`);
    ``caption`` says what was expected.
    """

    subject: str
    outcome: str
    expected: bool
    caption: str
    tone: Tone | None = None

    @property
    def colour(self) -> Tone:
        """The badge's tone."""
        return self.tone or outcome_tone(self.outcome)


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading, a paragraph, its findings, a text table and figures."""

    title: str
    intro: str
    text: str
    figures: Sequence[Path] = ()
    findings: Sequence[Finding] = field(default_factory=tuple)


def _image(path: Path) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(Path(path).stem.replace("_", " "))
    return f'<img alt="{alt}" src="data:image/png;base64,{encoded}">'


def _is_tabular(line: str) -> bool:
    return " | " in line or (bool(line.strip()) and set(line.strip()) <= {"-", "+"})


def render_text(text: str) -> str:
    """A section's text: prose lines wrap at the page's edge; tables keep their columns and scroll sideways where
    the page is narrower than they are, with a scroll bar and a shadow at the edge that has more to show.

    Examples
    --------
    >>> page = render_text("A title that may wrap\\n\\na | b\\n--+--\\n1 | 2")
    >>> page.count('<pre class="prose">'), page.count('<pre class="table">')
    (1, 1)
    """
    runs: list[tuple[bool, list[str]]] = []
    for line in text.splitlines():
        tabular = _is_tabular(line)
        if runs and runs[-1][0] == tabular:
            runs[-1][1].append(line)
        else:
            runs.append((tabular, [line]))
    blocks = [
        f'<pre class="{"table" if tabular else "prose"}">{html.escape(chr(10).join(lines).strip(chr(10)))}</pre>'
        for tabular, lines in runs
        if any(line.strip() for line in lines)
    ]
    return '<div class="text">' + "".join(blocks) + "</div>"


def render_findings(findings: Sequence[Finding]) -> str:
    """The findings as a table: subject, outcome badge, and a check mark (or a cross) with its caption.

    Examples
    --------
    >>> page = render_findings([Finding("tanh, N(0, 0.01^2)", "vanishing", True, "theory: vanishing")])
    >>> "#fde2e1" in page and "&#10003;" in page
    True
    """
    if not findings:
        return ""
    rows = ["<tr><th>demonstration</th><th>outcome</th><th>behaved as expected?</th></tr>"]
    for f in findings:
        mark = (
            f'<span class="expected">&#10003; yes: {html.escape(f.caption)}</span>'
            if f.expected
            else f'<span class="unexpected">&#10007; NO: expected {html.escape(f.caption)}</span>'
        )
        rows.append(f"<tr><td>{html.escape(f.subject)}</td><td>{badge(f.outcome, f.colour)}</td><td>{mark}</td></tr>")
    return '<table class="findings">' + "".join(rows) + "</table>"


def render_html(title: str, sections: Sequence[Section], *, footer: str = "") -> str:
    """The whole report as one HTML string.

    Examples
    --------
    >>> page = render_html("t", [Section("A", "intro", "x | y", findings=[Finding("demo", "passed", True, "pass")])])
    >>> "<h2>A</h2>" in page and "http" not in page
    True
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="legend">{html.escape(_LEGEND)}</p>',
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.append(f"<p>{html.escape(section.intro)}</p>")
        parts.append(render_findings(section.findings))
        if section.text:
            parts.append(render_text(section.text))
        parts.extend(_image(path) for path in section.figures)
    if footer:
        parts.append(f"<footer><p>{html.escape(footer)}</p></footer>")
    parts.append("</body></html>")
    return "\n".join(parts)
