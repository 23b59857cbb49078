"""preflight for JAX: check, initialize and diagnose Flax (linen and nnx), Equinox and plain-pytree models.

Imported on use only (``import preflight`` never imports jax); without jax installed, importing this module raises
:class:`preflight._util.optional.MissingExtraError` naming the extra ``jax``.
"""

from __future__ import annotations

from preflight._util.optional import require

require("jax", extra="jax", purpose="preflight.jax (gradient checks and diagnostics for JAX models)")

from preflight.jax.check import check_model  # noqa: E402
from preflight.jax.function import check_function  # noqa: E402
from preflight.jax.initialize import initialize  # noqa: E402
from preflight.jax.propagation import propagation  # noqa: E402

__all__ = ["check_function", "check_model", "initialize", "propagation"]
