"""Optional dependencies: import them on use, and name the extra to install when they are missing."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional part of preflight was used without its extra installed."""


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming the pip extra that provides it.

    Examples
    --------
    >>> require("numpy", extra="core", purpose="arrays").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs {module.split('.')[0]!r}: install it with pip install 'nn-preflight[{extra}]' ({exc})"
        ) from None
