"""``preflight gradcheck``: check the reference network's backprop (optionally with a planted bug), or a user's.

``preflight gradcheck`` alone checks a freshly initialized reference network on a random batch;
``preflight gradcheck --bug factor-2`` plants a bug to show what a failure looks like;
``preflight gradcheck mypackage.mymodule:make`` imports ``make`` and checks the ``(loss, params, grads)`` it returns
(grads may be named as the course names them, ``dW1``, ``db1``, ...; a fourth item, the batch ``X`` or ``(X, Y)``,
lets a hint name a missing 1/m with its m).
Exit code 0 when the check passes, 1 when it fails, 2 on bad input.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import numpy as np

from preflight._util import jsonsafe as strict_json
from preflight.check.engine import GradcheckReport, gradcheck
from preflight.cli._common import parse_sizes, plain_text
from preflight.nn.activations import ACTIVATIONS
from preflight.nn.bugs import BUGS, BuggyNetwork
from preflight.nn.heads import HEADS
from preflight.nn.network import Network

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``gradcheck`` command."""
    parser = subparsers.add_parser(
        "gradcheck",
        help="gradient check of the reference network or of module:function",
        description=plain_text(__doc__.split("\n\n")[1] if __doc__ else None),
    )
    parser.add_argument(
        "target", nargs="?", help="module:function returning (loss, params, grads); default: the reference network"
    )
    net = parser.add_argument_group("reference network")
    net.add_argument(
        "--sizes",
        nargs="+",
        default=NETWORK_DEFAULTS["sizes"],
        help="layer widths, input first, separated by commas or spaces (default 8,16,16,3)",
    )
    net.add_argument(
        "--hidden",
        default=NETWORK_DEFAULTS["hidden"],
        choices=sorted(ACTIVATIONS),
        help="hidden activation (default tanh)",
    )
    net.add_argument(
        "--output", default=NETWORK_DEFAULTS["output"], choices=sorted(HEADS), help="head (default softmax)"
    )
    net.add_argument("--l2", type=float, default=NETWORK_DEFAULTS["l2"], help="L2 strength lambda (default 0)")
    net.add_argument(
        "--keep-prob",
        type=float,
        default=NETWORK_DEFAULTS["keep_prob"],
        help="dropout keep probability (masks are frozen)",
    )
    net.add_argument(
        "--batch", type=int, default=NETWORK_DEFAULTS["batch"], help="rows in the random batch (default 64)"
    )
    net.add_argument(
        "--dtype", default=NETWORK_DEFAULTS["dtype"], choices=["float64", "float32"], help="parameter dtype"
    )
    net.add_argument("--bug", choices=sorted(BUGS), help="plant a bug in the backward pass, for demonstration")
    check = parser.add_argument_group("check")
    check.add_argument("--eps", type=float, default=None, help="step base (default cbrt(machine eps))")
    check.add_argument("--sample", type=float, default=None, help="fraction (< 1) or number of coordinates to check")
    check.add_argument("--method", default="central", choices=["central", "forward", "richardson"])
    check.add_argument("--screen", action="store_true", help="screen random directions first, then zoom in")
    check.add_argument("--seed", type=int, default=0, help="seed of parameters, data, masks and sampling")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    parser.set_defaults(handler=_handle)


#: The reference network's options and defaults; with a target they would be silently ignored, so they are refused.
NETWORK_DEFAULTS: dict[str, Any] = {
    "sizes": [8, 16, 16, 3],
    "hidden": "tanh",
    "output": "softmax",
    "l2": 0.0,
    "keep_prob": 1.0,
    "batch": 64,
    "dtype": "float64",
    "bug": None,
}


def _options(args: argparse.Namespace) -> dict[str, Any]:
    sample: int | float | None = args.sample
    if sample is not None and sample >= 1:
        if not float(sample).is_integer():
            raise ValueError(f"--sample: expected a fraction in (0, 1) or a whole number of coordinates, got {sample}")
        sample = int(sample)
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
    return {"eps": args.eps, "sample": sample, "seed": args.seed, "method": args.method, "screen": args.screen}


def run(args: argparse.Namespace) -> GradcheckReport:
    """The report the command prints."""
    options = _options(args)
    if args.target:
        given = [name for name, default in NETWORK_DEFAULTS.items() if getattr(args, name, default) != default]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ValueError(f"{flags}: options of the reference network, which a target ({args.target}) replaces")
        loss, params, grads, batch = _load(args.target)
        gradient = _guarded(grads, "the gradient") if callable(grads) else grads
        return gradcheck(_guarded(loss, "the loss"), params, gradient, batch=batch, **options)
    if args.batch < 1:
        raise ValueError(f"--batch: expected an integer >= 1, got {args.batch}")
    from preflight.nn.fast_check import check_network

    kwargs = {"l2": args.l2, "keep_prob": args.keep_prob}
    if args.bug and args.bug == "missing-l2" and args.l2 == 0:
        kwargs["l2"] = 1.0
    if args.bug and args.bug == "dropout-backward" and args.keep_prob == 1:
        kwargs["keep_prob"] = 0.8
    sizes = parse_sizes(args.sizes)
    net = (
        BuggyNetwork(sizes, args.hidden, args.output, bug=args.bug, **kwargs)
        if args.bug
        else Network(sizes, args.hidden, args.output, **kwargs)
    )
    rng = np.random.default_rng(args.seed)
    params = net.init(rng, "he" if args.hidden in ("relu", "leaky_relu") else "glorot", dtype=args.dtype)
    params = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype(args.dtype) for k, v in params.items()}
    X = rng.standard_normal((args.batch, net.sizes[0]))
    k = net.sizes[-1]
    y: Any = {
        "sigmoid": rng.integers(0, 2, (args.batch, k)) if k > 1 else rng.integers(0, 2, args.batch),
        "softmax": rng.integers(0, k, args.batch),
        "linear": rng.standard_normal((args.batch, k)),
    }[args.output]
    masks = net.dropout_masks(rng, args.batch) if net.keep_prob < 1 else None
    return check_network(net, params, X, y, masks=masks, **options)


def _load(target: str) -> tuple[Any, Any, Any, Any]:
    module_name, _, function_name = target.partition(":")
    if not module_name or not function_name:
        raise ValueError(f"target: expected module:function, got {target!r}")
    sys.path.insert(0, "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"target: cannot import {module_name!r} ({exc})") from None
    finally:
        sys.path.remove("")
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f"target: {module_name!r} has no function {function_name!r}")
    result = _guarded(function, f"{target}()")()
    if not (isinstance(result, tuple) and len(result) in (3, 4)):
        raise ValueError(
            f"target: {target} must return (loss, params, grads) or (loss, params, grads, batch), got "
            f"{type(result).__name__}"
        )
    return (*result, None) if len(result) == 3 else result


def _guarded(function: Any, what: str) -> Any:
    """``function`` whose exceptions become one ValueError line naming the user's code (exit 2, not a traceback)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except Exception as exc:  # the user's code: any exception is theirs to fix
            raise ValueError(
                f"target: {what} raised {type(exc).__name__}: {exc} (run it in Python to see the traceback)"
            ) from exc

    return call


def _handle(args: argparse.Namespace) -> int:
    report = run(args)
    print(strict_json.dumps(report.to_dict(), indent=2) if args.json else str(report))
    return 0 if report.passed else 1
