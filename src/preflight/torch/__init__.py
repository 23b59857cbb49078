"""preflight for PyTorch: check, initialize and diagnose real ``torch.nn`` models, and watch them train (Monitor).

Imported on use only (``import preflight`` never imports torch); without torch installed, importing this module
raises :class:`preflight._optional.MissingExtraError` naming the extra ``torch``.
"""

from __future__ import annotations

from preflight._util.optional import require

require("torch", extra="torch", purpose="preflight.torch (gradient checks and diagnostics for PyTorch models)")

from preflight.torch.check import check_module  # noqa: E402
from preflight.torch.function import check_function  # noqa: E402
from preflight.torch.initialize import InitializationReport, initialize  # noqa: E402
from preflight.torch.monitor import Monitor, NonFiniteError  # noqa: E402
from preflight.torch.propagation import propagation  # noqa: E402

__all__ = [
    "InitializationReport",
    "Monitor",
    "NonFiniteError",
    "check_function",
    "check_module",
    "initialize",
    "propagation",
]
