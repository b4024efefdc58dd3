"""The DARTS cell search space as UNAS uses it (UNAS: arXiv 1912.07651 §4 "DARTS search space"; DARTS: 1806.09055 §2).

A cell has two inputs (the outputs of the two previous cells, each preprocessed to ``C`` channels) and 4 intermediate
nodes; node ``i`` may read any of the ``i + 2`` earlier states, and the cell output concatenates the 4 nodes. Cells at
1/3 and 2/3 of the depth are reduction cells (ops on the two cell inputs have stride 2, the width doubles).

**Genotypes** (:class:`Genotype`, :data:`GENOTYPES`): DARTS form, per node two ``(op, input)`` pairs. UNAS stores its
cells as per-node ``{'inputs': [a, b], 'ops': [i, j]}`` indices into ``UNAS_PRIMITIVES``
(NVlabs/unas ``darts/genotypes.py``); :meth:`Genotype.from_unas` converts them (same cell: UNAS ``darts/model.py``
``FactorizedCell`` applies op ``i`` to state ``a`` and op ``j`` to state ``b`` and sums, as DARTS' ``Cell`` does).

**Search supernet** (:class:`DartsSearchNetwork`, defined in :mod:`workloads.nas.darts_search`, re-exported here)
and **evaluation network** (:class:`DartsEvalNetwork`, :class:`DartsImageNetNetwork`) follow UNAS
``darts/model_search.py`` and ``darts/model.py`` (= quark0/darts ``cnn/model.py``): CIFAR stem
``3x3 conv (3 -> 3C) + BN``; the ImageNet stem is two stride-2 convs then a third (``stem0``/``stem1``); auxiliary
head after cell ``2 * layers // 3``; drop-path on every non-identity branch in training only; parameter counts
exclude the auxiliary head (``count_parameters_in_M``).

Differences (explicit): the CIFAR auxiliary head pools with the reference ``AvgPool2d(5, stride=3)`` only on the
8x8 map it was designed for (32 px input) and uses adaptive 2x2 average pooling on other map sizes so the head still
runs at small resolutions; drop-path uses a constant ``drop_path_prob`` (the reference scripts ramp it linearly with
the epoch, ``train_eval_cifar.py`` L170: call :func:`set_drop_path_prob` per epoch to reproduce that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from workloads.nas.darts_ops import OPS, UNAS_PRIMITIVES, FactorizedReduce, ReLUConvBN, make_op
from workloads.nas.darts_search import (
    DartsSearchNetwork,
    MixedOp,
    SearchCell,
    edge_offset,
    num_edges,
    paired_input_edge_weights,
    uniform_edge_weights,
)

Pair = tuple[str, int]
UnasNode = tuple[tuple[int, int], tuple[int, int]]  # ((input_a, input_b), (op_a, op_b)) as in UNAS genotypes.py


@dataclass(frozen=True)
class Genotype:
    """A discrete cell pair: per node two ``(op name, input state)`` pairs; states 0/1 are the cell inputs."""

    normal: tuple[Pair, ...]
    normal_concat: tuple[int, ...]
    reduce: tuple[Pair, ...]
    reduce_concat: tuple[int, ...]

    def __post_init__(self) -> None:
        for kind, pairs in (("normal", self.normal), ("reduce", self.reduce)):
            if not pairs or len(pairs) % 2:
                raise ValueError(f"{kind} cell needs two (op, input) pairs per node, got {len(pairs)} pairs")
            for slot, (op, index) in enumerate(pairs):
                if op not in OPS:
                    raise ValueError(f"{kind} cell: unknown op {op!r}. Available: {', '.join(OPS)}")
                if not 0 <= index < 2 + slot // 2:
                    raise ValueError(f"{kind} cell node {slot // 2} cannot read state {index}")

    @classmethod
    def from_unas(
        cls, normal: Sequence[UnasNode], reduce: Sequence[UnasNode], primitives: Sequence[str] = UNAS_PRIMITIVES
    ) -> Genotype:
        """From UNAS' per-node ``(inputs, ops)`` index pairs (all nodes concatenated, as UNAS' ``range(2, 6)``)."""

        def pairs(nodes: Sequence[UnasNode]) -> tuple[Pair, ...]:
            return tuple(
                (primitives[op], int(inp)) for inputs, ops in nodes for inp, op in zip(inputs, ops, strict=True)
            )

        return cls(pairs(normal), tuple(range(2, 2 + len(normal))), pairs(reduce), tuple(range(2, 2 + len(reduce))))


_DARTS_SRC = "quark0/darts cnn/genotypes.py @f276dd3"
_UNAS_SRC = "NVlabs/unas darts/genotypes.py @cdd19b9"
_CONCAT = (2, 3, 4, 5)
GENOTYPES: dict[str, Genotype] = {
    "DARTS_V1": Genotype(
        normal=(("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 0), ("sep_conv_3x3", 1))
        + (("skip_connect", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("skip_connect", 2)),
        normal_concat=_CONCAT,
        reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 0))
        + (("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("avg_pool_3x3", 0)),
        reduce_concat=_CONCAT,
    ),
    "DARTS_V2": Genotype(
        normal=(("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1))
        + (("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)),
        normal_concat=_CONCAT,
        reduce=(("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1))
        + (("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)),
        reduce_concat=_CONCAT,
    ),
    "UNAS_CIFAR10": Genotype.from_unas(
        normal=[((0, 0), (4, 0)), ((0, 1), (0, 3)), ((0, 1), (1, 3)), ((1, 0), (1, 3))],
        reduce=[((0, 0), (1, 4)), ((1, 0), (0, 1)), ((1, 0), (5, 0)), ((3, 1), (4, 5))],
    ),
    "UNAS_CIFAR100": Genotype.from_unas(
        normal=[((0, 0), (1, 3)), ((1, 0), (3, 1)), ((0, 1), (0, 1)), ((1, 0), (4, 1))],
        reduce=[((0, 0), (6, 1)), ((1, 0), (1, 4)), ((1, 0), (6, 3)), ((0, 3), (3, 1))],
    ),
    "UNAS_IMAGENET": Genotype.from_unas(
        normal=[((0, 0), (1, 0)), ((0, 1), (1, 0)), ((1, 0), (1, 4)), ((0, 1), (1, 3))],
        reduce=[((0, 1), (4, 1)), ((0, 1), (4, 1)), ((1, 0), (4, 3)), ((3, 1), (3, 1))],
    ),
}
GENOTYPES["DARTS"] = GENOTYPES["DARTS_V2"]  # the alias of the DARTS repository
GENOTYPE_SOURCES: dict[str, str] = {
    "DARTS_V1": f"{_DARTS_SRC} DARTS_V1 (first-order DARTS cell)",
    "DARTS_V2": f"{_DARTS_SRC} DARTS_V2 (second-order DARTS cell, the paper's CIFAR-10 result)",
    "DARTS": f"{_DARTS_SRC} DARTS = DARTS_V2",
    "UNAS_CIFAR10": f"{_UNAS_SRC} UNAS_CIFAR10 (searched on CIFAR-10)",
    "UNAS_CIFAR100": f"{_UNAS_SRC} UNAS_CIFAR100 (searched on CIFAR-100)",
    "UNAS_IMAGENET": f"{_UNAS_SRC} UNAS_IMAGENET (searched on ImageNet with the first 5 ops)",
}


def get_genotype(name: str) -> Genotype:
    """A registered genotype by name, with the valid names in the error."""
    if name not in GENOTYPES:
        raise ValueError(f"Unknown genotype {name!r}. Registered: {', '.join(GENOTYPES)}")
    return GENOTYPES[name]


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero whole samples of a branch with probability ``drop_prob`` and rescale the kept ones (DARTS utils.py)."""
    keep = 1.0 - drop_prob
    mask = x.new_empty(x.shape[0], 1, 1, 1).bernoulli_(keep)
    return x / keep * mask


class EvalCell(nn.Module):
    """A discrete cell built from a genotype (UNAS ``FactorizedCell`` / DARTS ``Cell``)."""

    def __init__(self, genotype: Genotype, c_pp: int, c_p: int, c: int, reduction: bool, reduction_prev: bool) -> None:
        super().__init__()
        self.preprocess0 = FactorizedReduce(c_pp, c) if reduction_prev else ReLUConvBN(c_pp, c, 1, 1, 0)
        self.preprocess1 = ReLUConvBN(c_p, c, 1, 1, 0)
        pairs = genotype.reduce if reduction else genotype.normal
        self.concat = genotype.reduce_concat if reduction else genotype.normal_concat
        self.multiplier = len(self.concat)
        self.reduction = reduction
        self.indices = [index for _, index in pairs]
        self.ops = nn.ModuleList(make_op(name, c, 2 if reduction and index < 2 else 1) for name, index in pairs)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node in range(len(self.ops) // 2):
            total = None
            for slot in (2 * node, 2 * node + 1):
                op = self.ops[slot]
                h = op(states[self.indices[slot]])
                if self.training and drop_prob > 0 and not isinstance(op, nn.Identity):
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            assert total is not None
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)


class AuxiliaryHeadCIFAR(nn.Module):
    """DARTS' CIFAR auxiliary classifier on the 8x8 map after the second reduction (adaptive pool elsewhere)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(5, stride=3, padding=0, count_include_pad=False)
        self.features = nn.Sequential(
            nn.Conv2d(channels, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 768, 2, bias=False),
            nn.BatchNorm2d(768),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        x = self.pool(x) if tuple(x.shape[-2:]) == (8, 8) else F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


class AuxiliaryHeadImageNet(AuxiliaryHeadCIFAR):
    """The ImageNet auxiliary head (14x14 input, ``AvgPool2d(5, stride=2)``; UNAS keeps the BN after the 768 conv)."""

    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__(channels, num_classes)
        self.pool = nn.AvgPool2d(5, stride=2, padding=0, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        x = self.pool(x) if tuple(x.shape[-2:]) == (14, 14) else F.adaptive_avg_pool2d(x, 2)
        return self.classifier(self.features(x).flatten(1))


def reduction_layers(layers: int) -> tuple[int, int]:
    """Indices of the two reduction cells: 1/3 and 2/3 of the depth (DARTS/UNAS)."""
    return layers // 3, 2 * layers // 3


class DartsEvalNetwork(nn.Module):
    """Evaluation network of a genotype on CIFAR: ``layers`` cells of ``init_channels`` (paper: 20 x 36).

    ``forward(x)`` returns logits; ``forward(x, return_aux=True)`` returns ``(logits, aux_logits)`` with
    ``aux_logits`` None outside training or without the auxiliary head. ``drop_path_prob`` is an attribute the
    training loop may change between epochs (:func:`set_drop_path_prob`).
    """

    aux_head_cls: type[AuxiliaryHeadCIFAR] = AuxiliaryHeadCIFAR

    def __init__(
        self,
        genotype: Genotype,
        num_classes: int,
        init_channels: int = 36,
        layers: int = 20,
        auxiliary: bool = True,
        drop_path_prob: float = 0.0,
        in_channels: int = 3,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        self.genotype = genotype
        self.drop_path_prob = drop_path_prob
        c_stem, reduction_prev = self._make_stem(in_channels, init_channels, stem_multiplier)
        self.cells = nn.ModuleList()
        c_pp, c_p, c = c_stem, c_stem, init_channels
        self.aux_index = reduction_layers(layers)[1]
        c_aux = c_p
        for i in range(layers):
            reduction = i in reduction_layers(layers)
            c = c * 2 if reduction else c
            cell = EvalCell(genotype, c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.multiplier * c
            c_aux = c_p if i == self.aux_index else c_aux
        self.auxiliary_head = self.aux_head_cls(c_aux, num_classes) if auxiliary else None
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_p, num_classes)

    def _make_stem(self, in_channels: int, init_channels: int, stem_multiplier: int) -> tuple[int, bool]:
        c_stem = stem_multiplier * init_channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), nn.BatchNorm2d(c_stem))
        return c_stem, False

    def _stem_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.stem(x)
        return s, s

    def forward(
        self, x: torch.Tensor, return_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        s0, s1 = self._stem_forward(x)
        aux = None
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and return_aux and self.training and self.auxiliary_head is not None:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(self.global_pooling(s1).flatten(1))
        return (logits, aux) if return_aux else logits


class DartsImageNetNetwork(DartsEvalNetwork):
    """The ImageNet (mobile setting) evaluation network: three stride-2 stem convs, DARTS paper 14 cells x 48.

    UNAS' ``train_eval_imagenet.py`` instead picks the largest even ``init_channels`` under 600 M FLOPs
    (``compute_flops.find_max_channels``); pass that width explicitly.
    """

    aux_head_cls = AuxiliaryHeadImageNet

    def __init__(
        self, genotype: Genotype, num_classes: int, init_channels: int = 48, layers: int = 14, **kw: object
    ) -> None:
        super().__init__(genotype, num_classes, init_channels, layers, **kw)  # type: ignore[arg-type]

    def _make_stem(self, in_channels: int, init_channels: int, stem_multiplier: int) -> tuple[int, bool]:
        c = init_channels
        self.stem0 = nn.Sequential(
            nn.Conv2d(in_channels, c // 2, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c // 2),
            nn.ReLU(inplace=True),
            nn.Conv2d(c // 2, c, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c),
        )
        self.stem1 = nn.Sequential(
            nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c)
        )
        return c, True

    def _stem_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s0 = self.stem0(x)
        return s0, self.stem1(s0)


def set_drop_path_prob(model: nn.Module, drop_path_prob: float) -> None:
    """Set the drop-path probability (e.g. ``p * epoch / epochs`` each epoch, as the reference scripts do)."""
    for module in model.modules():
        if isinstance(module, DartsEvalNetwork):
            module.drop_path_prob = drop_path_prob


def count_params(model: nn.Module, exclude: str = "auxiliary") -> int:
    """Parameters without the auxiliary head (UNAS ``util/utils.py`` ``count_parameters_in_M``, DARTS alike)."""
    return sum(p.numel() for name, p in model.named_parameters() if exclude not in name)


__all__ = [
    "GENOTYPES",
    "GENOTYPE_SOURCES",
    "DartsEvalNetwork",
    "DartsImageNetNetwork",
    "DartsSearchNetwork",
    "EvalCell",
    "Genotype",
    "MixedOp",
    "SearchCell",
    "count_params",
    "drop_path",
    "edge_offset",
    "get_genotype",
    "num_edges",
    "paired_input_edge_weights",
    "set_drop_path_prob",
    "uniform_edge_weights",
]
