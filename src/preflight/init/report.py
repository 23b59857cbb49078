"""What an initialization of a real model did, layer by layer: the report of ``preflight.torch.initialize`` and
``preflight.jax.initialize`` (one type, so both read and serialize the same)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from preflight._util import jsonsafe as strict_json
from preflight._util.text import format_table

__all__ = ["InitializationReport", "LayerInit"]


@dataclass(frozen=True)
class LayerInit:
    """What was done to one layer."""

    name: str
    shape: tuple[int, ...]
    activation: str
    scheme: str
    std: float
    variance_before: float | None = None
    variance_after: float | None = None
    iterations: int | None = None


@dataclass(frozen=True)
class InitializationReport:
    """Per layer: the activation found after it, the scheme chosen, the weight's resulting standard deviation.

    ``skipped`` names the parameters left as they were, ``skipped_why`` says why (torch: frozen, with
    ``requires_grad=False``) and ``skipped_fix`` how to include them.
    """

    scheme: str
    traced: str
    layers: tuple[LayerInit, ...]
    skipped: tuple[str, ...] = ()
    skipped_why: str = "frozen (requires_grad=False), left as they were"
    skipped_fix: str = "include_frozen=True initializes them too"

    def to_dict(self) -> dict[str, Any]:
        """Plain dicts and numbers: the scheme, how activations were found, one object per layer, what was skipped."""
        return {
            "scheme": self.scheme,
            "traced": self.traced,
            "layers": [layer.__dict__ for layer in self.layers],
            "skipped": list(self.skipped),
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """:meth:`to_dict` as strict JSON text."""
        return strict_json.dumps(self.to_dict(), indent=indent)

    def __str__(self) -> str:
        lsuv = self.scheme == "lsuv"
        headers = ["layer", "shape", "followed by", "scheme", "weight std"]
        headers += ["output var before", "after", "rescalings"] if lsuv else []
        rows = []
        for r in self.layers:
            row: list[Any] = [r.name, "x".join(map(str, r.shape)), r.activation, r.scheme, r.std]
            row += [r.variance_before, r.variance_after, r.iterations] if lsuv else []
            rows.append(row)
        table = format_table(headers, rows, title=f"initialize(scheme={self.scheme!r}): activations {self.traced}")
        if not self.skipped:
            return table
        return f"{table}\nnote: {self.skipped_why}: {list(self.skipped)} ({self.skipped_fix})"
