"""The tour: every part of preflight that exists, run in sequence, its results collected."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preflight.experiments import load

__all__ = ["Tour", "run_tour"]


@dataclass(frozen=True)
class Tour:
    """The sections of the tour, by name, each an experiment result."""

    sections: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {name: result.to_json() for name, result in self.sections.items()}

    def __str__(self) -> str:
        return "\n\n".join(f"== {name} ==\n{result}" for name, result in self.sections.items())

    def plot(self, directory: Path) -> list[Path]:
        return [path for result in self.sections.values() for path in result.plot(directory)]


def run_tour(*, quick: bool = False) -> Tour:
    """Run every section; ``quick`` shortens the training runs (for tests)."""
    sections = {"initialization": load("init-schemes").run(iterations=2000 if quick else 15000)}
    return Tour(sections)
