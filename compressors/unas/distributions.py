"""The architecture distribution of UNAS (Vahdat et al., CVPR'20, arXiv 1912.07651 §3) and its two search spaces.

``q_alpha(d)`` is a product of independent categoricals, one per choice (NVlabs/unas ``darts/alphas.py``,
``proxylessnas/alphas.py``): in the DARTS cell space one per (cell kind, node, slot, {input, op}), in the ProxylessNAS
space one per searchable layer. Logits start at 0 (a uniform ``q``; ``alphas.py`` L125-144). Samples:

- discrete ``d = onehot(argmax(log q + G))``, ``G ~ Gumbel(0, 1)`` (the Gumbel-max trick: exactly ``d ~ q``);
- relaxed ``z~ = softmax((log q + G) / tau)`` on the same noise (Gumbel-softmax / Concrete; UNAS' ``tau = 0.4``);
- REBAR's conditional relaxation (Tucker et al., arXiv 1703.07370, App. C; UNAS ``gsm_utils.py``
  ``gumbel_softmax_sample_rebar``): the noise ``v`` that makes ``z~|d`` land on the same point as ``z~`` is computed
  from ``u`` and held fixed; the returned tensor has the value of ``z~`` and the gradient ``dz~ - dz~|d``, which is
  the correction term of UNAS' estimator (paper Eq. 3). Differs: the official code's ``g_hat.scatter(...)`` is not in
  place, so its argmax coordinate comes from the generic formula; that coordinate is a constant of the logits either
  way (``log v_k`` is detached), so the value and gradient agree; here it is set explicitly.

``soften_eps > 0`` replaces the logits by ``log(softmax(alpha) + eps)`` before sampling and in ``log q`` (UNAS
``--gsm_soften_eps``; 0.08 in the ProxylessNAS and ImageNet searches). Every function works on a leading sample
dimension ``S``: one architecture per example (``S = batch``) or one per minibatch (``--same_alpha_minibatch``,
``S = 1``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workloads.nas.darts import DartsEvalNetwork, Genotype
from workloads.nas.darts_search import paired_input_edge_weights
from workloads.nas.proxyless import ZERO, ProxylessEvalNetwork, layer_plan

RELAXATIONS = ("rebar", "gumbel", "none")
U_MIN, U_MAX = 1e-10, 1.0 - 1e-7  # keeps log(-log u) finite in float32 (UNAS clamps to [1e-3, 1 - 1e-3])


# ---- one categorical (rows of independent choices with K options each) ---------------------------------------------
def log_prob(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """``log q(d)`` summed over every row but the leading sample dim (``alphas.py`` ``log_q``)."""
    return (onehot * F.log_softmax(logits, dim=-1)).sum(dim=-1).flatten(1).sum(dim=1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H(q) = -sum q log q`` summed over rows (``alphas.py`` ``entropy_loss``; logged, not optimised)."""
    logq = F.log_softmax(logits, dim=-1)
    return -(logq.exp() * logq).sum()


def gumbel_perturbed(logits: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``log q + G`` with ``G = -log(-log u)``; its argmax is a sample of ``q``."""
    return F.log_softmax(logits, dim=-1) - torch.log(-torch.log(u))


def onehot_argmax(z: torch.Tensor) -> torch.Tensor:
    return F.one_hot(z.argmax(dim=-1), z.shape[-1]).to(z.dtype)


def gumbel_softmax(logits: torch.Tensor, u: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(relaxed ``softmax((log q + G) / tau)``, discrete ``onehot(argmax)``) on the same noise."""
    z = gumbel_perturbed(logits, u)
    return F.softmax(z / tau, dim=-1), onehot_argmax(z.detach())


def rebar_relaxed(logits: torch.Tensor, u: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(``z~`` with REBAR's conditional-correction gradient ``dz~ - dz~|d``, discrete ``d``) on the same noise.

    With ``k = argmax z``: ``log v_k = log(u_k) / q_k`` and ``log v_i = log u_i - q_i log v_k`` (both held fixed);
    ``z~|d`` has ``z_k = -log(-log v_k)`` and ``z_i = -log(-log v_i / q_i - log v_k)``, which equals ``z`` in value.
    """
    logq = F.log_softmax(logits, dim=-1)
    q = logq.exp()
    z = logq - torch.log(-torch.log(u))
    d = onehot_argmax(z.detach())
    mask = d.bool()
    log_u = torch.log(u)
    log_vk = ((log_u * d).sum(-1, keepdim=True) / (q * d).sum(-1, keepdim=True)).detach()
    log_v = (log_u - q * log_vk).detach()
    generic = -torch.log(-log_v / q - log_vk)
    z_cond = torch.where(mask, -torch.log(-log_vk).expand_as(generic), generic)
    relaxed, relaxed_cond = F.softmax(z / tau, dim=-1), F.softmax(z_cond / tau, dim=-1)
    return relaxed - relaxed_cond + relaxed_cond.detach(), d


def uniform_noise(shape: Sequence[int], generator: torch.Generator | None, device: Any = "cpu") -> torch.Tensor:
    """``u ~ U(0, 1)`` drawn on the CPU generator (reproducible on every device), clamped away from 0 and 1."""
    return torch.rand(tuple(shape), generator=generator).clamp_(U_MIN, U_MAX).to(device)


@dataclass
class ArchSample:
    """One draw of ``S`` architectures: per group ``[S, rows, K]`` discrete one-hots and (optionally) relaxed."""

    discrete: dict[str, torch.Tensor]
    relaxed: dict[str, torch.Tensor] | None
    count: int


class ArchDistribution(nn.Module):
    """``q_alpha``: per group a logits tensor ``[rows, K]`` (zeros), sampled jointly.

    Args:
        groups: name -> ``(rows, K)``.
        soften_eps: UNAS ``gsm_soften_eps`` (0 = off).
        temperature: the Gumbel-softmax temperature ``tau`` (UNAS 0.4).
    """

    def __init__(self, groups: dict[str, tuple[int, int]], soften_eps: float = 0.0, temperature: float = 0.4) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature={temperature} must be > 0")
        self.names = list(groups)
        self.alphas = nn.ParameterList(nn.Parameter(torch.zeros(rows, k)) for rows, k in groups.values())
        self.soften_eps = soften_eps
        self.temperature = temperature

    def raw(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.alphas, strict=True))

    def logits(self) -> dict[str, torch.Tensor]:
        """The logits sampled from: ``alpha``, or ``log(softmax(alpha) + eps)`` when softened."""
        if self.soften_eps <= 0:
            return self.raw()
        return {k: torch.log(F.softmax(a, dim=-1) + self.soften_eps) for k, a in self.raw().items()}

    def probs(self) -> dict[str, torch.Tensor]:
        return {k: F.softmax(a, dim=-1).detach() for k, a in self.logits().items()}

    def sample(self, count: int, relaxation: str, generator: torch.Generator | None) -> ArchSample:
        """``count`` architectures; ``relaxation`` in :data:`RELAXATIONS` (``none``: discrete only)."""
        if relaxation not in RELAXATIONS:
            raise ValueError(f"relaxation={relaxation!r} is not one of {RELAXATIONS}")
        discrete: dict[str, torch.Tensor] = {}
        relaxed: dict[str, torch.Tensor] = {}
        for name, logits in self.logits().items():
            expanded = logits.unsqueeze(0).expand(count, *logits.shape)
            u = uniform_noise(expanded.shape, generator, logits.device)
            if relaxation == "rebar":
                relaxed[name], discrete[name] = rebar_relaxed(expanded, u, self.temperature)
            else:
                soft, discrete[name] = gumbel_softmax(expanded, u, self.temperature)
                if relaxation == "gumbel":
                    relaxed[name] = soft
        return ArchSample(discrete, relaxed if relaxation != "none" else None, count)

    def log_prob(self, discrete: dict[str, torch.Tensor]) -> torch.Tensor:
        """``log q(d)`` per sample, ``[S]`` (differentiable in ``alpha``)."""
        return sum(log_prob(logits.unsqueeze(0), discrete[k]) for k, logits in self.logits().items())  # type: ignore[return-value]

    def entropy(self) -> torch.Tensor:
        return sum(entropy(logits) for logits in self.logits().values())  # type: ignore[return-value]


# ---- the two search spaces -------------------------------------------------------------------------------------------
def genotype_to_dict(genotype: Genotype) -> dict[str, Any]:
    return {
        "normal": [list(p) for p in genotype.normal],
        "normal_concat": list(genotype.normal_concat),
        "reduce": [list(p) for p in genotype.reduce],
        "reduce_concat": list(genotype.reduce_concat),
    }


class DartsSpace:
    """The DARTS cell space with UNAS' paired inputs: per cell kind and node ``i``, ``input.i`` ``[2, i + 2]`` and
    the node's rows of ``op`` ``[2 * nodes, num_ops]`` (one shared alpha per cell kind: UNAS ``num_normal=1``)."""

    name = "darts"
    kinds = ("normal", "reduce")

    def __init__(self, nodes: int, primitives: Sequence[str], num_classes: int, eval_options: dict[str, Any]) -> None:
        self.nodes, self.primitives, self.num_classes = nodes, tuple(primitives), num_classes
        self.eval_options = eval_options

    def groups(self) -> dict[str, tuple[int, int]]:
        out: dict[str, tuple[int, int]] = {}
        for kind in self.kinds:
            out.update({f"{kind}.input.{i}": (2, i + 2) for i in range(self.nodes)})
            out[f"{kind}.op"] = (2 * self.nodes, len(self.primitives))
        return out

    def _slots(self, w: dict[str, torch.Tensor], kind: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        ops = w[f"{kind}.op"]
        inputs = [w[f"{kind}.input.{i}"] for i in range(self.nodes)]
        return inputs, [ops[:, 2 * i : 2 * i + 2] for i in range(self.nodes)]

    def forward(self, net: nn.Module, x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """The supernet on per-example (``S = batch``) or shared (``S = 1``) weights."""
        edges = [paired_input_edge_weights(*self._slots(w, kind)) for kind in self.kinds]
        if edges[0].shape[0] == 1:
            edges = [e[0] for e in edges]
        return net(x, edges[0], edges[1])

    def alpha_penalty(self, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """UNAS' alpha loss ``sum_nodes sum input_op0 * input_op1`` per sample (``alphas.py`` ``alpha_loss``); the
        sum over (input, op) factorises as ``(in0 . in1)(op0 . op1)``."""
        total = 0.0
        for kind in self.kinds:
            for inp, op in zip(*self._slots(w, kind), strict=True):
                total = total + (inp[:, 0] * inp[:, 1]).sum(-1) * (op[:, 0] * op[:, 1]).sum(-1)
        return total  # type: ignore[return-value]

    def features(self, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """``vec(d)`` for the latency surrogate: every slot's ``input x op`` product (``alphas.py`` get_arch_sample)."""
        parts = []
        for kind in self.kinds:
            for inp, op in zip(*self._slots(w, kind), strict=True):
                parts.append((inp.unsqueeze(-1) * op.unsqueeze(-2)).flatten(1))
        return torch.cat(parts, dim=1)

    def _genotype(self, inputs: dict[str, list[int]], ops: dict[str, list[int]]) -> Genotype:
        pairs = {k: tuple((self.primitives[o], i) for i, o in zip(inputs[k], ops[k], strict=True)) for k in self.kinds}
        concat = tuple(range(2, 2 + self.nodes))
        return Genotype(pairs["normal"], concat, pairs["reduce"], concat)

    def architecture(self, discrete: dict[str, torch.Tensor], index: int = 0) -> Genotype:
        """The genotype of sample ``index`` of a discrete draw."""
        inputs = {k: [int(j) for i in range(self.nodes) for j in discrete[f"{k}.input.{i}"][index].argmax(-1)]
                  for k in self.kinds}  # fmt: skip
        ops = {k: [int(o) for o in discrete[f"{k}.op"][index].argmax(-1)] for k in self.kinds}
        return self._genotype(inputs, ops)

    def derive(self, alphas: dict[str, torch.Tensor], distinct_inputs: bool = True) -> Genotype:
        """The most likely architecture: per slot the argmax input and op (UNAS ``Alpha.genotype``); with
        ``distinct_inputs`` a node whose two slots pick one input takes the most likely pair of distinct inputs
        (``log q0(a) + log q1(b)``, ``a != b``), DARTS' rule of two different inputs per node."""
        inputs: dict[str, list[int]] = {k: [] for k in self.kinds}
        for kind in self.kinds:
            for i in range(self.nodes):
                logq = F.log_softmax(alphas[f"{kind}.input.{i}"].detach().float(), dim=-1)
                pick = [int(logq[0].argmax()), int(logq[1].argmax())]
                if distinct_inputs and pick[0] == pick[1]:
                    pair = logq[0].unsqueeze(1) + logq[1].unsqueeze(0)
                    pair.fill_diagonal_(float("-inf"))
                    flat = int(pair.argmax())
                    pick = [flat // pair.shape[1], flat % pair.shape[1]]
                inputs[kind] += pick
        ops = {k: [int(o) for o in alphas[f"{k}.op"].detach().argmax(-1)] for k in self.kinds}
        return self._genotype(inputs, ops)

    @staticmethod
    def distinct_inputs(genotype: Genotype) -> bool:
        """Every node of both cells reads two different states."""
        return all(
            p[2 * n][1] != p[2 * n + 1][1] for p in (genotype.normal, genotype.reduce) for n in range(len(p) // 2)
        )

    def build_eval(self, genotype: Genotype) -> nn.Module:
        o = self.eval_options
        return DartsEvalNetwork(genotype, self.num_classes, o["init_channels"], o["layers"], False, 0.0)

    def describe(self, genotype: Genotype) -> dict[str, Any]:
        return genotype_to_dict(genotype)

    def key(self, genotype: Genotype) -> str:
        return json.dumps(genotype_to_dict(genotype), sort_keys=True)


class ProxylessSpace:
    """The ProxylessNAS space: group ``normal`` (layers that may be ``mic_zero``, 7 choices) and ``reduce``
    (stage-first layers, 6 MBConv choices), rows in layer order (UNAS ``proxylessnas/alphas.py``)."""

    name = "proxyless"

    def __init__(self, net_widths: Any, num_classes: int, eval_options: dict[str, Any]) -> None:
        self.plan = layer_plan(net_widths)
        self.num_classes, self.eval_options = num_classes, eval_options
        self.rows: list[tuple[str, int]] = []
        counts = {"normal": 0, "reduce": 0}
        for *_, choices in self.plan:
            group = "normal" if ZERO in choices else "reduce"
            self.rows.append((group, counts[group]))
            counts[group] += 1
        self.choices = {g: next(c for *_, c in self.plan if (ZERO in c) == (g == "normal")) for g in counts}
        self.counts = counts

    def groups(self) -> dict[str, tuple[int, int]]:
        return {g: (n, len(self.choices[g])) for g, n in self.counts.items()}

    def forward(self, net: nn.Module, x: torch.Tensor, w: dict[str, torch.Tensor]) -> torch.Tensor:
        per_layer = [w[g][:, r] for g, r in self.rows]
        if per_layer[0].shape[0] == 1:
            per_layer = [p[0] for p in per_layer]
        return net(x, per_layer)

    def alpha_penalty(self, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """No pair of slots in this space (UNAS sets ``alpha_loss = False`` for ProxylessNAS)."""
        return w["normal"].new_zeros(w["normal"].shape[0])

    def features(self, w: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([w["normal"].flatten(1), w["reduce"].flatten(1)], dim=1)

    def architecture(self, discrete: dict[str, torch.Tensor], index: int = 0) -> tuple[str, ...]:
        return tuple(self.choices[g][int(discrete[g][index, r].argmax())] for g, r in self.rows)

    def derive(self, alphas: dict[str, torch.Tensor], distinct_inputs: bool = True) -> tuple[str, ...]:
        """The argmax op of every layer (UNAS ``Alpha.genotype``)."""
        return tuple(self.choices[g][int(alphas[g][r].detach().argmax())] for g, r in self.rows)

    def build_eval(self, architecture: Sequence[str]) -> nn.Module:
        o = self.eval_options
        return ProxylessEvalNetwork(tuple(architecture), self.num_classes, o["widths"], o["width_multiplier"])

    def describe(self, architecture: Sequence[str]) -> list[str]:
        return list(architecture)

    def key(self, architecture: Sequence[str]) -> str:
        return ",".join(architecture)


def architecture_id(space: DartsSpace | ProxylessSpace, architecture: Any) -> str:
    """A short stable id of an architecture (for registered names and logs)."""
    return hashlib.sha256(space.key(architecture).encode()).hexdigest()[:10]
