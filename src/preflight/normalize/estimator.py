"""The scikit-learn estimator protocol, without importing scikit-learn: parameters, repr, tags, output, fitted state.

A class lists its constructor's keyword arguments and their defaults in ``PARAMETERS``; ``get_params``,
``set_params``, the repr and the parameter checks follow from it (scikit-learn's ``clone``, ``Pipeline`` and
``GridSearchCV`` need no more). ``set_output`` chooses the container ``transform`` returns
(:mod:`preflight.normalize.output`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np

from preflight.normalize.errors import invalid_parameter
from preflight.normalize.output import check_output

__all__ = ["EstimatorProtocol"]


class EstimatorProtocol:
    """Mixin: ``get_params`` / ``set_params`` / ``set_output`` / ``__repr__`` / checks from ``PARAMETERS``."""

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

    def set_output(self, *, transform: str | None = None) -> Self:
        """Choose what ``transform`` and ``fit_transform`` return (scikit-learn's ``set_output``).

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None
            An ndarray (or sparse matrix), a pandas DataFrame or a polars DataFrame with
            ``get_feature_names_out()`` as columns (and a pandas input's index); None leaves the choice as it is.
            Without a choice of its own the estimator follows scikit-learn's global ``transform_output``.
        """
        if transform is not None:
            chosen = check_output(transform)
            self._sklearn_output_config = {**getattr(self, "_sklearn_output_config", {}), "transform": chosen}
        return self

    @property
    def _parameter_constraints(self) -> dict[str, Any]:
        """What scikit-learn's ``check_param_validation`` reads: each parameter's allowed values."""
        return {
            name: ["boolean"] if isinstance(default, bool) else "no_validation"
            for name, default in self.PARAMETERS.items()
        }

    def _check_params(self) -> None:
        """Boolean parameters must be bools: an ``InvalidParameterError`` (a ValueError) naming the parameter."""
        for name, default in self.PARAMETERS.items():
            value = getattr(self, name)
            if isinstance(default, bool) and not isinstance(value, (bool, np.bool_)):
                raise invalid_parameter(type(self).__name__, name, "True or False (a bool)", value)

    def __repr__(self) -> str:
        changed = ", ".join(
            f"{name}={getattr(self, name)!r}"
            for name, default in sorted(self.PARAMETERS.items())
            if getattr(self, name) != default
        )
        return f"{type(self).__name__}({changed})"

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self.FITTED_ATTRIBUTE)
