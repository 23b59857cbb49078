"""preflight: get a neural network ready to train, and prove it.

Normalize inputs, initialize weights, diagnose vanishing/exploding signals, and check gradients. The core needs
NumPy only; plotting, scikit-learn data sets, PyTorch and dask are optional extras.

The package has one folder per concept (``normalize``, ``init``, ``nn``, ``check``, ``propagation``, ``torch``,
``course``, ``experiments``, ``report``); see CONTRIBUTING.md for the layout and the one-way flow of imports.
"""

import sys as _sys

from preflight import check, course, data, init, nn, normalize, propagation
from preflight._util.warn import PreflightWarning
from preflight.check import gradcheck
from preflight.init import layer_sequential as lsuv
from preflight.nn import Network
from preflight.normalize import NotFittedError, Standardizer

__all__ = [
    "Network",
    "NotFittedError",
    "PreflightWarning",
    "Standardizer",
    "__version__",
    "check",
    "course",
    "data",
    "gradcheck",
    "init",
    "lsuv",
    "nn",
    "normalize",
    "propagation",
]

__version__ = "0.1.0"

# Module paths of the first release that the README named, kept importable (``from preflight.lsuv import lsuv``,
# ``preflight.bugs.BuggyNetwork``): each is the module that now holds those names, not a copy.
_LEGACY_MODULES = {
    "lsuv": "preflight.init.layer_sequential",
    "bugs": "preflight.nn.bugs",
    "callbacks": "preflight.nn.callbacks",
    "perturb": "preflight.check.perturb",
    "network_check": "preflight.nn.fast_check",
    "tree": "preflight.check.tree",
    "numdiff": "preflight.check.numdiff",
}
for _old, _new in _LEGACY_MODULES.items():
    _sys.modules.setdefault(f"preflight.{_old}", _sys.modules[_new])
del _old, _new
