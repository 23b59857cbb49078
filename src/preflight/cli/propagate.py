"""``preflight propagate``: how the signal travels through a reference network, layer by layer, with verdicts."""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np

from preflight import data, init, propagation
from preflight._util.validation import check_choice
from preflight.cli._common import add_output_options, emit, parse_sizes
from preflight.init import lsuv
from preflight.nn.network import Network

__all__ = ["DATA", "register"]

DATA = ("random", "digits", "circles")


def register(subparsers: Any) -> None:
    """Add the ``propagate`` command."""
    parser = subparsers.add_parser(
        "propagate",
        help="per-layer forward/backward statistics, verdicts and the init that fits the activations",
        description="Initialize a reference network, run one batch forward and backward, and report per layer: "
        "activation std, saturated/dead fractions, gradient norms, update ratio, measured vs mean-field gain "
        "chi, and a verdict (healthy, vanishing, exploding, saturated, dead).",
    )
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=[64, 100, 50, 10],
        help="layer widths, input first, separated by commas or spaces (default 64,100,50,10)",
    )
    parser.add_argument("--hidden", default="tanh", help="hidden activation, or one per hidden layer, comma-separated")
    parser.add_argument("--output", default="softmax", help="head: sigmoid, softmax or linear (default softmax)")
    parser.add_argument(
        "--scheme", default="he", help=f"init scheme: lsuv or one of {', '.join(init.SCHEMES)} (default he)"
    )
    parser.add_argument("--data", default="random", help="random (N(0, 1)), digits or circles (default random)")
    parser.add_argument("--samples", type=int, default=256, help="batch size (default 256; digits: all 1797)")
    parser.add_argument("--learning-rate", type=float, default=0.01, help="for the update ratio (default 0.01)")
    parser.add_argument("--dtype", default="float64", choices=("float64", "float32"), help="parameter dtype")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and random data (default 0)")
    add_output_options(parser)
    parser.set_defaults(handler=_handle)


def _batch(name: str, network: Network, samples: int, rng: np.random.Generator) -> tuple[Any, Any]:
    """The batch to diagnose, checked against the network's input width and head."""
    n_in, k = network.sizes[0], network.sizes[-1]
    if name == "random":
        X = rng.standard_normal((samples, n_in))
        if network.output == "softmax":
            return X, rng.integers(0, k, samples)
        if network.output == "sigmoid":
            return X, rng.integers(0, 2, (samples, k))
        return X, rng.standard_normal((samples, k))
    X, y = data.digits() if name == "digits" else data.circles(samples, seed=rng)
    if X.shape[1] != n_in:
        raise ValueError(f"--sizes: {name} has {X.shape[1]} features, so the first size must be {X.shape[1]}")
    std = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0), y


def _handle(args: argparse.Namespace) -> int:
    hidden = args.hidden.split(",") if "," in args.hidden else args.hidden
    network = Network(parse_sizes(args.sizes), hidden=hidden, output=args.output)
    if args.data not in DATA:
        raise ValueError(f"--data: got {args.data!r}; expected one of {list(DATA)}")
    if args.samples < 2:
        raise ValueError(f"--samples: expected an integer >= 2, got {args.samples}")
    if args.seed < 0:
        raise ValueError(f"--seed: expected an integer >= 0, got {args.seed}")
    check_choice(args.scheme, name="--scheme", allowed=["lsuv", *init.SCHEMES])
    rng = np.random.default_rng(args.seed)
    X, y = _batch(args.data, network, args.samples, rng)
    if args.scheme == "lsuv":
        params = lsuv(network, X, rng, dtype=args.dtype).params
    else:
        params = network.init(rng, init.get(args.scheme), dtype=args.dtype)
    with warnings.catch_warnings():
        # The report states every verdict itself; the warnings are for library callers.
        warnings.simplefilter("ignore", propagation.PropagationWarning)
        report = propagation.analyze(network, params, X, y, learning_rate=args.learning_rate)
    return emit(report, args)
