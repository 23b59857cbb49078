"""What :class:`preflight.normalize.Standardizer` raises and warns, catchable as scikit-learn's exceptions too.

scikit-learn is no dependency, yet code written for StandardScaler catches ``sklearn.exceptions.NotFittedError``
(and tests catch ``InvalidParameterError``). So when scikit-learn is installed, the exception raised is a subclass
of ours *and* of scikit-learn's class of the same meaning, made once, on the first error; without scikit-learn it
is ours alone. Either way it is a ValueError (and an AttributeError, or a TypeError), as scikit-learn's are.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from typing import Any, cast

from preflight._util.warn import PreflightWarning

__all__ = [
    "ConstantFeatureWarning",
    "InvalidParameterError",
    "NotFittedError",
    "invalid_parameter",
    "not_fitted",
]


class NotFittedError(ValueError, AttributeError):
    """The Standardizer was used before ``fit`` (a ValueError and an AttributeError, as scikit-learn's)."""


class InvalidParameterError(ValueError, TypeError):
    """A constructor argument of the wrong type or value (a ValueError and a TypeError, as scikit-learn's)."""


class ConstantFeatureWarning(PreflightWarning):
    """A feature is constant or nearly so: it gets scale 1, so transform only centers it."""


@functools.cache
def _twin(ours: type[Exception], module: str, name: str) -> type[Exception]:
    """``ours``, or a subclass of ``ours`` and of scikit-learn's ``module.name`` when scikit-learn is installed."""
    if importlib.util.find_spec("sklearn") is None:
        return ours
    try:
        theirs = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):  # a scikit-learn that moved it: ours still says what went wrong
        return ours
    return type(ours.__name__, (ours, theirs), {"__module__": ours.__module__, "__doc__": ours.__doc__})


def not_fitted(message: str) -> NotFittedError:
    """A NotFittedError carrying ``message``, also a ``sklearn.exceptions.NotFittedError`` where that exists.

    Examples
    --------
    >>> error = not_fitted("call fit first")
    >>> isinstance(error, NotFittedError) and isinstance(error, ValueError) and isinstance(error, AttributeError)
    True
    """
    return cast(NotFittedError, _twin(NotFittedError, "sklearn.exceptions", "NotFittedError")(message))


def invalid_parameter(owner: str, name: str, expected: str, value: Any) -> InvalidParameterError:
    """The error for constructor argument ``name`` of ``owner``, worded as scikit-learn words it.

    Examples
    --------
    >>> print(invalid_parameter("Standardizer", "copy", "True or False (a bool)", "yes"))
    The 'copy' parameter of Standardizer must be True or False (a bool). Got 'yes' instead.
    """
    twin = _twin(InvalidParameterError, "sklearn.utils._param_validation", "InvalidParameterError")
    return cast(
        InvalidParameterError, twin(f"The {name!r} parameter of {owner} must be {expected}. Got {value!r} instead.")
    )
