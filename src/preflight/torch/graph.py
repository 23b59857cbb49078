"""The graph strategy: a cached forward pass, one layer's output moved by structure, only what follows it rerun.

``torch.fx`` traces the model into its graph of layer calls and functions (residual additions, attention products,
reshapes). One forward pass caches the value of every node. A perturbation of a parameter of one layer changes that
layer's output in a known way (:mod:`preflight.torch.layer_updates`: a column of a Linear, a shifted input channel
of a convolution, one row of an embedding, a scaled normalized element); a Linear followed by elementwise
activations and another Linear stays a rank-one update of the second one's output, as in the chain strategy. Then
only the nodes downstream of the moved one run, on a batch of perturbations (``torch.func.vmap``, in chunks that
bound memory), every other node read from the cache. A layer without a structured update runs itself on the batch
of perturbed parameters; a tensor used in more than one node (tied weights, a module called twice) goes through the
whole model, vmapped (:class:`preflight.torch._evaluators.VmapEvaluator`).

The strategy is refused, with the reason, when the model does not trace, holds an in-place operation (it would
overwrite cached values), has dropout or batch statistics in training mode, or when the traced graph's loss is not
bit for bit the model's own loss.
"""

from __future__ import annotations

import operator
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.func import functional_call, vmap

from preflight.torch._evaluators import CHUNK_ELEMENTS, ELEMENTWISE, VmapEvaluator
from preflight.torch.layer_updates import moved_outputs, plain

__all__ = ["GraphEvaluator", "build_graph_evaluator", "linear_only"]

Loss = Callable[[Any], torch.Tensor]
#: Elementwise functions a changed Linear column may pass through and stay one column (besides ELEMENTWISE modules).
ELEMENTWISE_FUNCTIONS = (torch.tanh, torch.sigmoid, torch.relu, F.relu, F.gelu, F.silu, F.tanh, F.sigmoid)
#: A chunk's perturbed activations (summed over the nodes rerun) hold at most this many elements: 16 x the chain's
#: per-tensor bound, since the sum over nodes is a loose upper bound of what is alive at once (128 MiB in float64).
SUFFIX_ELEMENTS = 16 * CHUNK_ELEMENTS


class _Tracer(fx.Tracer):
    """torch.fx's tracer that keeps a module it cannot trace through (data-dependent control flow, an autograd
    Function) as one opaque call, instead of failing the whole model."""

    def __init__(self) -> None:
        super().__init__()
        self.opaque: dict[int, bool] = {}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if super().is_leaf_module(m, module_qualified_name):
            return True
        if id(m) not in self.opaque:
            try:
                fx.Tracer().trace(m)
                self.opaque[id(m)] = False
            except Exception:
                self.opaque[id(m)] = True
        return self.opaque[id(m)]


def linear_only(model: nn.Module) -> bool:
    """Every layer with parameters of its own is a plain Linear (the chain strategy's rank-one case).

    Examples
    --------
    >>> linear_only(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)))
    True
    >>> linear_only(nn.Sequential(nn.Conv1d(2, 3, 3), nn.Flatten(), nn.Linear(3, 1)))
    False
    """
    owners = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    return all(plain(m, nn.Linear) for m in owners)


def build_graph_evaluator(
    model: nn.Module, inputs: tuple[Any, ...], loss: Loss, whole: VmapEvaluator, shared: set[str]
) -> tuple[GraphEvaluator | None, str]:
    """The graph evaluator of ``model`` on ``inputs``, or None and why it does not apply.

    ``loss`` maps the model's output to the scalar loss; ``whole`` evaluates a tensor through the whole model (for
    tensors the graph cannot isolate); ``shared`` names the tensors reached under several names.
    """
    for m in model.modules():
        if m.training and (isinstance(m, nn.modules.dropout._DropoutNd) or any(True for _ in m.buffers())):
            return None, "dropout or batch statistics in training mode"
        if getattr(m, "inplace", False):
            return None, f"an in-place module ({type(m).__name__}(inplace=True)) would overwrite cached values"
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:
        return None, f"torch.fx could not trace it ({type(exc).__name__})"
    for node in graph.nodes:
        if _in_place(node):
            return None, f"an in-place operation ({node.target}) would overwrite cached values"
    try:
        evaluator = GraphEvaluator(model, graph, inputs, loss, whole, shared)
    except Exception as exc:
        return None, f"the traced graph does not run ({type(exc).__name__})"
    with torch.no_grad():
        direct = loss(model(*inputs))
    if not torch.equal(evaluator.f0, direct):
        return None, "the traced graph's loss differs from the model's"
    return evaluator, ""


def _in_place(node: fx.Node) -> bool:
    named = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    if node.op in ("call_method", "call_function") and named.endswith("_") and not named.endswith("__"):
        return True
    return bool(node.kwargs.get("inplace")) or node.target in (operator.iadd, operator.imul, operator.isub)


class GraphEvaluator:
    """Perturbed losses from the cached graph (see the module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        graph: fx.Graph,
        inputs: tuple[Any, ...],
        loss: Loss,
        whole: VmapEvaluator,
        shared: set[str],
    ) -> None:
        self.model, self.loss = model, loss
        self.nodes = list(graph.nodes)
        self.position = {node: i for i, node in enumerate(self.nodes)}
        self.modules = dict(model.named_modules())
        self.whole = whole
        self.vmap_works = True
        self.cache: dict[fx.Node, Any] = {}
        placeholders = iter(inputs)
        with torch.no_grad():
            for node in self.nodes:
                if node.op == "placeholder":
                    self.cache[node] = next(placeholders, node.args[0] if node.args else None)
                elif node.op == "output":
                    self.f0 = loss(fx.node.map_arg(node.args[0], self.cache.__getitem__))
                else:
                    self.cache[node] = self._run(node, self.cache)
        self.users = {name: self._users(name) for name in whole.params if name not in shared}
        sizes = [v.numel() if isinstance(v, torch.Tensor) else 0 for v in self.cache.values()]
        self.after = [sum(sizes[i + 1 :]) for i in range(len(sizes))]

    def _users(self, name: str) -> list[fx.Node]:
        """The nodes that read parameter ``name``: a layer owning it (called), or a direct attribute read."""
        return [
            node
            for node in self.nodes
            if (node.op == "call_module" and name.startswith(f"{node.target}."))
            or (node.op == "get_attr" and (name == node.target or name.startswith(f"{node.target}.")))
        ]

    def _run(self, node: fx.Node, env: dict[fx.Node, Any]) -> Any:
        args = fx.node.map_arg(node.args, env.__getitem__)
        kwargs = fx.node.map_arg(node.kwargs, env.__getitem__)
        if node.op == "call_module":
            return self.modules[str(node.target)](*args, **kwargs)
        if node.op == "call_function":
            return node.target(*args, **kwargs)  # type: ignore[operator]
        if node.op == "call_method":
            return getattr(args[0], str(node.target))(*args[1:], **kwargs)
        if node.op == "get_attr":
            value = self.model
            for part in str(node.target).split("."):
                value = getattr(value, part)
            return value
        raise ValueError(f"graph: unexpected node {node.op}")

    def chunk(self, name: str) -> int:
        users = self.users.get(name) or []
        if len(users) != 1:
            return self.whole.chunk(name)
        return max(1, min(4096, SUFFIX_ELEMENTS // max(1, self.after[self.position[users[0]]])))

    def losses(self, name: str, coords: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
        users = self.users.get(name) or []
        if len(users) != 1:
            return self.whole.losses(name, coords, deltas)
        node = users[0]
        if node.op == "get_attr":
            return self._from(node, self._moved_parameter(name, str(node.target), coords, deltas))
        owner = self.modules[str(node.target)]
        pname = name[len(str(node.target)) + 1 :]
        args = fx.node.map_arg(node.args, self.cache.__getitem__)
        simple = not node.kwargs and "." not in pname
        if simple and plain(owner, nn.Embedding) and pname == "weight" and isinstance(args[0], torch.Tensor):
            # A row no index selects leaves the output, so the loss, exactly as it was: only the rows used rerun.
            used = torch.isin(coords // owner.embedding_dim, torch.unique(args[0]))
            out = torch.full((len(coords),), float(self.f0), dtype=torch.float64)
            if bool(used.any()):
                chosen = used.nonzero().view(-1)
                moved = moved_outputs(owner, pname, args, self.cache[node], coords[chosen], deltas[chosen])
                out[chosen] = self._from(node, moved)
            return out
        if simple and plain(owner, nn.Linear) and isinstance(args[0], torch.Tensor):
            ranked = self._rank_one(node, owner, pname, args[0], coords, deltas)
            if ranked is not None:
                return ranked
        moved = moved_outputs(owner, pname, args, self.cache[node], coords, deltas) if simple else None
        if moved is None:
            batch = self._moved_parameter(name, pname, coords, deltas, owner)
            kwargs = fx.node.map_arg(node.kwargs, self.cache.__getitem__)

            def layer(p: torch.Tensor) -> Any:
                return functional_call(owner, {pname: p}, tuple(args), kwargs)

            moved = _batched(layer, batch)
        return self._from(node, moved)

    def _moved_parameter(
        self, name: str, path: str, coords: torch.Tensor, deltas: torch.Tensor, owner: nn.Module | None = None
    ) -> torch.Tensor:
        base = dict((owner or self.model).named_parameters())[path if owner is not None else name].detach()
        batch = base.reshape(1, -1).repeat(len(coords), 1)
        batch.scatter_add_(1, coords.view(-1, 1), deltas.to(base.dtype).view(-1, 1))
        return batch.view(len(coords), *base.shape)

    def _rank_one(
        self, node: fx.Node, layer: nn.Linear, pname: str, u: torch.Tensor, coords: torch.Tensor, deltas: torch.Tensor
    ) -> torch.Tensor | None:
        """A Linear's moved column through elementwise activations into the next Linear: a rank-one update there."""
        rows = coords // layer.in_features if pname == "weight" else coords
        deltas = deltas.to(u.dtype)
        change = deltas.view((-1,) + (1,) * (u.dim() - 1))
        if pname == "weight":
            change = change * u.index_select(-1, coords % layer.in_features).movedim(-1, 0)
        before = self.cache[node].index_select(-1, rows).movedim(-1, 0)
        after, here = before + change, node
        while True:
            users = list(here.users)
            if len(users) != 1 or users[0].args[:1] != (here,) or len(users[0].all_input_nodes) != 1:
                return None
            nxt = users[0]
            target = self.modules.get(str(nxt.target)) if nxt.op == "call_module" else None
            if target is not None and type(target) in ELEMENTWISE and not nxt.kwargs and len(nxt.args) == 1:
                after, before = target(after), self.cache[nxt].index_select(-1, rows).movedim(-1, 0)
            elif nxt.op == "call_function" and nxt.target in ELEMENTWISE_FUNCTIONS and len(nxt.args) == 1:
                fn: Any = nxt.target
                after, before = fn(after, **nxt.kwargs), self.cache[nxt].index_select(-1, rows).movedim(-1, 0)
            elif target is not None and plain(target, nn.Linear) and not nxt.kwargs and len(nxt.args) == 1:
                weight = target.weight.detach()
                row = weight.index_select(1, rows).T.reshape((len(rows),) + (1,) * (u.dim() - 1) + (-1,))
                moved = torch.addcmul(self.cache[nxt], (after - before).unsqueeze(-1), row)
                return self._from(nxt, moved)
            else:
                return None
            here = nxt

    def _from(self, start: fx.Node, moved: Any) -> torch.Tensor:
        """Losses with node ``start`` at the k values in ``moved``: the nodes after it rerun, batched."""
        later = self.nodes[self.position[start] + 1 :]

        def rest(value: Any) -> torch.Tensor:
            env, dirty = dict(self.cache), {start}
            env[start] = value
            for node in later:
                if node.op == "output":
                    return self.loss(fx.node.map_arg(node.args[0], env.__getitem__))
                if any(n in dirty for n in node.all_input_nodes):
                    env[node] = self._run(node, env)
                    dirty.add(node)
            raise ValueError("graph: no output node")

        if self.vmap_works:
            try:
                losses: torch.Tensor = _batched(rest, moved).to(torch.float64)
                return losses
            except (RuntimeError, ValueError, NotImplementedError):
                self.vmap_works = False  # an op without a batching rule: the same suffix, one perturbation a call
        count = len(moved[0] if isinstance(moved, (tuple, list)) else moved)
        return torch.stack([rest(_row(moved, r)).to(torch.float64) for r in range(count)])


def _row(moved: Any, r: int) -> Any:
    """Perturbation ``r`` of a batch of moved values (a tensor, or a tuple of them for a layer with several outputs)."""
    return fx.node.map_aggregate(moved, lambda t: t[r] if isinstance(t, torch.Tensor) else t)


def _batched(fn: Callable[[Any], Any], batch: Any) -> Any:
    """``vmap(fn)(batch)``, without torch's warning that an op (``nn.MultiheadAttention``'s fused kernel) has no
    batching rule and runs slower: the check's own choice of strategy, nothing the caller can act on."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="There is a performance drop", category=UserWarning)
        return vmap(fn)(batch)
