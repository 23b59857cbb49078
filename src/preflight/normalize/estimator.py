"""The scikit-learn estimator protocol, without importing scikit-learn: parameters, repr, tags, fitted state.

A class lists its constructor's keyword arguments and their defaults in ``PARAMETERS``; ``get_params``,
``set_params`` and the repr follow from it (scikit-learn's ``clone``, ``Pipeline`` and ``GridSearchCV`` need no more).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

__all__ = ["EstimatorProtocol"]


class EstimatorProtocol:
    """Mixin: ``get_params`` / ``set_params`` / ``__repr__`` / scikit-learn tags from ``PARAMETERS``."""

    #: The constructor's keyword arguments and their defaults (shown in name order, as scikit-learn does).
    PARAMETERS: ClassVar[dict[str, Any]] = {}
    #: The attribute whose presence means fitted (scikit-learn's ``check_is_fitted``).
    FITTED_ATTRIBUTE: ClassVar[str] = "n_features_in_"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's arguments (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in sorted(self.PARAMETERS)}

    def set_params(self, **params: Any) -> Self:
        """Set constructor arguments by name (scikit-learn protocol); unknown names are a ValueError."""
        for name, value in params.items():
            if name not in self.PARAMETERS:
                raise ValueError(
                    f"{type(self).__name__}.set_params: got {name!r}; expected one of {sorted(self.PARAMETERS)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name, default in sorted(self.PARAMETERS.items())
            if getattr(self, name) != default
        )
        return f"{type(self).__name__}({changed})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self.FITTED_ATTRIBUTE)
