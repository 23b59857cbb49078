"""A self-contained HTML report: figures embedded as base64 PNG, no external assets, readable offline."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Section", "render_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { margin-top: 2.5rem; border-bottom: 1px solid #bbb; }
pre { background: #f6f6f6; padding: .8rem; overflow-x: auto; font-size: .85rem; }
img { max-width: 100%; border: 1px solid #ddd; margin: .5rem 0; }
.verdict { display: inline-block; padding: .15rem .6rem; border-radius: .3rem; font-weight: 600; }
.ok { background: #d9f2dd; color: #14532d; } .bad { background: #fde2e1; color: #7f1d1d; }
"""


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading, a paragraph, a text table, figures and verdict lines."""

    title: str
    intro: str
    text: str
    figures: Sequence[Path] = ()
    verdicts: Sequence[tuple[str, bool]] = field(default_factory=tuple)


def _image(path: Path) -> str:
    encoded = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(Path(path).stem.replace("_", " "))
    return f'<img alt="{alt}" src="data:image/png;base64,{encoded}">'


def render_html(title: str, sections: Sequence[Section], *, footer: str = "") -> str:
    """The whole report as one HTML string.

    Examples
    --------
    >>> page = render_html("t", [Section("A", "intro", "x | y", verdicts=[("passes", True)])])
    >>> "<h2>A</h2>" in page and "http" not in page
    True
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        parts.append(f"<p>{html.escape(section.intro)}</p>")
        for text, ok in section.verdicts:
            parts.append(f'<p><span class="verdict {"ok" if ok else "bad"}">{html.escape(text)}</span></p>')
        if section.text:
            parts.append(f"<pre>{html.escape(section.text)}</pre>")
        parts.extend(_image(path) for path in section.figures)
    if footer:
        parts.append(f"<footer><p>{html.escape(footer)}</p></footer>")
    parts.append("</body></html>")
    return "\n".join(parts)
