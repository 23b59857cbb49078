"""The reference network: a NumPy MLP with hand-written backprop, its heads and activations, its structure-aware
gradient check (:func:`gradcheck`), its Hessian-vector product by hand (:meth:`Network.hvp`), planted bugs to
practise on, and a training callback that checks as it trains."""

from __future__ import annotations

from preflight.nn.activations import ACTIVATIONS, Activation
from preflight.nn.bugs import BUGS, HVP_BUGS, BuggyNetwork
from preflight.nn.callbacks import GradcheckCallback, GradientCheckError
from preflight.nn.fast_check import gradcheck
from preflight.nn.heads import HEADS, Head
from preflight.nn.network import DropoutMasks, History, Network, Trace

__all__ = [
    "ACTIVATIONS",
    "BUGS",
    "HEADS",
    "HVP_BUGS",
    "Activation",
    "BuggyNetwork",
    "DropoutMasks",
    "GradcheckCallback",
    "GradientCheckError",
    "Head",
    "History",
    "Network",
    "Trace",
    "gradcheck",
]
