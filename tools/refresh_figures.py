"""Re-run the README's and docs' re-runnable figure blocks and write what they print now.

Usage: ``python tools/refresh_figures.py [PAGE:LINE ...]`` (default: every failing ``rerun`` figure; PAGE is the
path from the repository root, ``README.md`` or ``docs/guides/network.md``, as tests/test_readme.py names them). The
blocks are the ones tests/test_readme.py checks; a figure marked ``~x`` (float32 rounding noise) keeps its ``~``
with the new value at one significant digit, "..." lines stay where they were when the line count is unchanged, and
durations print as measured. Review the diff before committing: the command's output is the new claim.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_readme import FIGURES, NUMBER, assert_block_in_output, run_figure, tokens  # noqa: E402


def noisy(old: str, new: str) -> str:
    """``new`` with the tokens that were ``~x`` in ``old`` (same position) written ``~y`` at one digit."""
    old_tokens, new_tokens = tokens(old), tokens(new)
    if len(old_tokens) != len(new_tokens) or not any(t.startswith("~") for t in old_tokens):
        return new
    out, position = new, 0
    for before, after in zip(old_tokens, new_tokens, strict=True):
        start = out.find(after, position)
        if before.startswith("~") and NUMBER.fullmatch(after) and start >= 0:
            value = f"~{float(after):.0e}".replace("e-0", "e-").replace("e+00", "")
            value = f"~{float(after):.1g}" if 1e-3 <= abs(float(after)) < 1e4 else value
            out = out[:start] + value.ljust(len(after)) + out[start + len(after) :]
        position = start + len(after) if start >= 0 else position
    return out


def refresh(figure: object) -> str:
    output = run_figure(figure)  # type: ignore[arg-type]
    lines = [line for line in output.splitlines()]
    old = figure.block.splitlines()  # type: ignore[attr-defined]
    shown = [line for line in old if line.strip() and line.strip() != "..."]
    new = [line for line in lines if line.strip() or not line]
    if len(shown) == len([line for line in new if line.strip()]):
        it = iter(line for line in new if line.strip())
        merged = [noisy(line, next(it)) if line.strip() and line.strip() != "..." else line for line in old]
        return "\n".join(merged).rstrip() + "\n"
    return "\n".join(lines).rstrip() + "\n"


def main(wanted: list[str]) -> None:
    for figure in FIGURES:
        if not figure.mode.startswith("rerun") or (wanted and figure.id not in wanted):
            continue
        try:
            assert_block_in_output(figure.block, run_figure(figure), figure.rel)
            if not wanted:
                continue
        except AssertionError:
            pass
        text = figure.page.read_text(encoding="utf-8")
        fresh = refresh(figure)
        text = text.replace("```\n" + figure.block + "```", "```\n" + fresh + "```", 1)
        figure.page.write_text(text, encoding="utf-8")
        print(f"refreshed {figure.id}")


if __name__ == "__main__":
    main(sys.argv[1:])
