"""The container ``transform`` returns: an ndarray, or a pandas / polars DataFrame (scikit-learn's ``set_output``).

The choice is the estimator's own (``set_output(transform=...)``, kept in ``_sklearn_output_config`` where
scikit-learn keeps it, so ``clone`` copies it) or else scikit-learn's global ``transform_output`` (``set_config`` /
``config_context``), read only when scikit-learn has been imported: without it the global setting cannot have
been changed. A DataFrame gets ``get_feature_names_out()`` as columns and, from a pandas input, its index.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = ["OUTPUTS", "Output", "check_output", "configured_output", "wrap_output"]

Output = Literal["default", "pandas", "polars"]
OUTPUTS: tuple[Output, ...] = ("default", "pandas", "polars")


def check_output(transform: Any) -> Output:
    """``transform`` if it is one of :data:`OUTPUTS`, else a ValueError listing them.

    Examples
    --------
    >>> check_output("pandas")
    'pandas'
    """
    if transform not in OUTPUTS:
        raise ValueError(f"transform: got {transform!r}; expected one of {list(OUTPUTS)} or None (unchanged)")
    output: Output = transform
    return output


def configured_output(estimator: Any) -> Output:
    """The estimator's ``set_output`` choice, else scikit-learn's global ``transform_output``, else "default".

    Examples
    --------
    >>> configured_output(object())
    'default'
    """
    own = getattr(estimator, "_sklearn_output_config", {}).get("transform")
    if own is not None:
        return check_output(own)
    sklearn = sys.modules.get("sklearn")
    get_config = getattr(sklearn, "get_config", None)
    return check_output(get_config().get("transform_output", "default")) if get_config is not None else "default"


def wrap_output(out: Any, original: Any, columns: NDArray[Any], output: Output) -> Any:
    """``out`` (the transformed values) in the container ``output`` names, with ``columns`` and the input's index.

    Raises
    ------
    ValueError
        A DataFrame was asked for sparse output (scikit-learn's message: it says how to turn that off).

    Examples
    --------
    >>> wrap_output(np.ones((1, 2)), None, np.array(["a", "b"], dtype=object), "pandas").columns.tolist()
    ['a', 'b']
    """
    if output == "default":
        return out
    if type(out).__module__.startswith("scipy.sparse"):
        raise ValueError(
            f"{output.capitalize()} output does not support sparse data. The transformer outputs a scipy sparse "
            "matrix: pass dense data, or disable it with set_output(transform='default')."
        )
    names = [str(c) for c in columns]
    if output == "pandas":
        pd = _library("pandas")
        index = original.index if isinstance(original, (pd.DataFrame, pd.Series)) else None
        frame = pd.DataFrame(out, index=index, copy=False)
        frame.columns = names
        return frame
    pl = _library("polars")
    return pl.DataFrame(np.asarray(out), schema=names, orient="row")


def _library(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"set_output(transform={name!r}) needs {name}: pip install {name}") from None
