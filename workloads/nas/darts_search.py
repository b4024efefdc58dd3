"""The DARTS-space search supernet driven by architecture weights (UNAS arXiv 1912.07651 §3-4; DARTS 1806.09055 §2.2).

Follows NVlabs/unas ``darts/model_search.py`` (@cdd19b9): every edge (node ``i``, earlier state ``j``) is a mixed op
holding every primitive (BN without affine parameters, no extra BN after pools: UNAS disables DARTS' ``if 'pool'``
branch); a node sums its edges; the cell concatenates its nodes. Defaults: 8 cells of 16 channels, 4 nodes, stem
multiplier 3, reduction cells at 1/3 and 2/3 depth, ``UNAS_PRIMITIVES`` (``train_search.py`` L101-147).

**Interface for a search method.** ``forward(x, weights_normal, weights_reduce, gates_normal, gates_reduce)``:

- ``weights_*``: the op weights of every edge, shape ``[num_edges, num_ops]`` (one architecture for the batch) or
  ``[batch, num_edges, num_ops]`` (one per example, as UNAS samples without ``--same_alpha_minibatch``), or a
  sequence of such tensors, one per cell of that kind. Edges are ordered node by node, inputs in order: node ``i``
  owns edges ``edge_offset(i) + j`` for ``j < i + 2`` (14 edges with 4 nodes). Rows can be relaxed samples
  (Gumbel-softmax), one-hot samples, or softmax probabilities (DARTS). Edge output = ``sum_k w[e, k] * op_k(state_j)``.
- ``gates_*`` (optional): per-edge gates ``[num_edges]`` or ``[batch, num_edges]`` multiplying each edge's row.
- UNAS' input selection (each node picks 2 inputs, each with one op: ``alpha['input']`` [2, i+2] and
  ``alpha['op']`` [2, num_ops] per node, ``darts/alphas.py``) maps onto these weights with
  :func:`paired_input_edge_weights`: edge ``(i, j)`` gets ``sum_slot input[slot, j] * op[slot, :]``, exactly the
  ``input_op0[:, j] + input_op1[:, j]`` of UNAS' ``CellPairedInput``. Since a mixed op is linear in its weights,
  one-hot inputs and ops give the discrete cell (a node with both slots on one input and op gets weight 2 there).
- ``None`` weights use the default architecture distribution: ``"paired"`` (default) is the UNAS expectation under
  uniform logits (every edge of node ``i`` gets ``2 / ((i + 2) * num_ops)`` per op); ``"softmax"`` is DARTS' uniform
  softmax (``1 / num_ops``). Either way the generic harness can train and evaluate the supernet as a plain model.

Ops whose weight is ``<= prune_below`` for every example are not computed (exact for one-hot samples at the default
0; UNAS' ``MixedOp`` skips weights below 5e-2: pass ``prune_below=0.05`` for that behaviour).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from workloads.nas.darts_ops import UNAS_PRIMITIVES, FactorizedReduce, ReLUConvBN, make_op

Weights = torch.Tensor | Sequence[torch.Tensor] | None
DEFAULT_WEIGHTINGS = ("paired", "softmax")


def num_edges(nodes: int) -> int:
    """Edges of a cell: node ``i`` reads the ``i + 2`` earlier states."""
    return sum(i + 2 for i in range(nodes))


def edge_offset(node: int) -> int:
    """Index of the first edge of ``node`` (its input 0) in the ``[num_edges, ...]`` weights."""
    return num_edges(node)


def paired_input_edge_weights(
    input_weights: Sequence[torch.Tensor], op_weights: Sequence[torch.Tensor]
) -> torch.Tensor:
    """Edge weights ``[..., num_edges, num_ops]`` from UNAS' per-node input and op selections.

    Args:
        input_weights: per node ``i`` a tensor ``[..., 2, i + 2]`` (two input slots, relaxed or one-hot).
        op_weights: per node a tensor ``[..., 2, num_ops]`` (the op of each slot).
    """
    edges = [
        (inp.unsqueeze(-1) * op.unsqueeze(-2)).sum(dim=-3) for inp, op in zip(input_weights, op_weights, strict=True)
    ]
    return torch.cat(edges, dim=-2)


def uniform_edge_weights(nodes: int, num_ops: int, weighting: str = "paired") -> torch.Tensor:
    """The default architecture distribution's expected edge weights ``[num_edges, num_ops]``."""
    if weighting == "softmax":
        return torch.full((num_edges(nodes), num_ops), 1.0 / num_ops)
    if weighting != "paired":
        raise ValueError(f"Unknown default weighting {weighting!r}; use one of {DEFAULT_WEIGHTINGS}")
    inputs = [torch.full((2, i + 2), 1.0 / (i + 2)) for i in range(nodes)]
    return paired_input_edge_weights(inputs, [torch.full((2, num_ops), 1.0 / num_ops)] * nodes)


class MixedOp(nn.Module):
    """All primitives on one edge; the output is their weighted sum."""

    def __init__(self, channels: int, stride: int, primitives: Sequence[str]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, channels, stride, affine=False) for name in primitives)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[bool] | None = None
    ) -> torch.Tensor | None:
        """``weights`` is ``[num_ops]`` or ``[batch, num_ops]``; ops with ``active[k]`` False are skipped."""
        total: torch.Tensor | None = None
        for k, op in enumerate(self.ops):
            if active is not None and not active[k]:
                continue
            w = weights[..., k]
            y = (w.view(-1, 1, 1, 1) if w.dim() else w) * op(x)
            total = y if total is None else total + y
        return total


class SearchCell(nn.Module):
    """A cell whose every edge is a :class:`MixedOp` (UNAS ``Cell``/``CellPairedInput``)."""

    def __init__(
        self, nodes: int, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool, primitives: Sequence[str]
    ) -> None:
        super().__init__()
        pre0 = FactorizedReduce(c_pp, c, affine=False) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0, affine=False)
        self.preprocess0 = pre0
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0, affine=False)
        self.nodes = nodes
        self.reduction = reduction
        self.edges = nn.ModuleList(
            MixedOp(c, 2 if reduction and j < 2 else 1, primitives) for i in range(nodes) for j in range(i + 2)
        )

    def forward(
        self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor, prune_below: float = 0.0
    ) -> torch.Tensor:
        peak = weights.detach().abs()
        active = (peak.amax(dim=0) if peak.dim() == 3 else peak).gt(prune_below).tolist()
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        edge = 0
        for _ in range(self.nodes):
            total: torch.Tensor | None = None
            for h in list(states):
                y = self.edges[edge](h, weights[..., edge, :], active[edge])
                edge += 1
                if y is not None:
                    total = y if total is None else total + y
            if total is None:  # every edge of the node switched off: the node is zero
                stride = 2 if self.reduction else 1
                total = states[1][:, :, ::stride, ::stride].mul(0.0)
            states.append(total)
        return torch.cat(states[-self.nodes :], dim=1)


class DartsSearchNetwork(nn.Module):
    """The supernet (module docstring: the weight interface). Paper search profile: 8 cells x 16 channels."""

    def __init__(
        self,
        num_classes: int,
        init_channels: int = 16,
        layers: int = 8,
        nodes: int = 4,
        primitives: Sequence[str] = UNAS_PRIMITIVES,
        stem_multiplier: int = 3,
        in_channels: int = 3,
        default_weighting: str = "paired",
        prune_below: float = 0.0,
    ) -> None:
        super().__init__()
        self.primitives = tuple(primitives)
        self.nodes = nodes
        self.num_edges = num_edges(nodes)
        self.num_ops = len(self.primitives)
        self.prune_below = prune_below
        self.register_buffer("default_weights", uniform_edge_weights(nodes, self.num_ops, default_weighting), False)
        c_stem = stem_multiplier * init_channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        self.cells = nn.ModuleList()
        self.reductions: list[bool] = [i in (layers // 3, 2 * layers // 3) for i in range(layers)]
        c_pp, c_p, c, reduction_prev = c_stem, c_stem, init_channels, False
        for reduction in self.reductions:
            c = c * 2 if reduction else c
            self.cells.append(SearchCell(nodes, c_pp, c_p, c, reduction, reduction_prev, self.primitives))
            reduction_prev = reduction
            c_pp, c_p = c_p, nodes * c
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    @property
    def num_normal(self) -> int:
        return self.reductions.count(False)

    @property
    def num_reduce(self) -> int:
        return self.reductions.count(True)

    def _per_cell(self, weights: Weights, gates: torch.Tensor | None, count: int, kind: str) -> list[torch.Tensor]:
        if weights is None:
            weights = self.get_buffer("default_weights")
        items = [weights] * count if isinstance(weights, torch.Tensor) else list(weights)
        if len(items) != count:
            raise ValueError(f"weights_{kind}: got {len(items)} tensors for {count} {kind} cells")
        shape = (self.num_edges, self.num_ops)
        for w in items:
            if w.dim() not in (2, 3) or tuple(w.shape[-2:]) != shape:
                raise ValueError(
                    f"weights_{kind} must be [num_edges, num_ops] = {list(shape)}, optionally with a batch dim "
                    f"first; got {list(w.shape)}"
                )
        if gates is not None:
            items = [w * gates.unsqueeze(-1) for w in items]
        return items

    def forward(
        self,
        x: torch.Tensor,
        weights_normal: Weights = None,
        weights_reduce: Weights = None,
        gates_normal: torch.Tensor | None = None,
        gates_reduce: torch.Tensor | None = None,
    ) -> torch.Tensor:
        normal = iter(self._per_cell(weights_normal, gates_normal, self.num_normal, "normal"))
        reduce = iter(self._per_cell(weights_reduce, gates_reduce, self.num_reduce, "reduce"))
        s0 = s1 = self.stem(x)
        for cell, reduction in zip(self.cells, self.reductions, strict=True):
            w = next(reduce) if reduction else next(normal)
            s0, s1 = s1, cell(s0, s1, w.to(s1.dtype), self.prune_below)
        return self.classifier(self.global_pooling(s1).flatten(1))
