"""The ProxylessNAS MobileNetV2-style search space as UNAS uses it (UNAS arXiv 1912.07651 §4 "ProxylessNAS search
space"; ProxylessNAS: Cai et al., ICLR'19, arXiv 1812.00332 §3 and §4).

Skeleton (both NVlabs/unas ``proxylessnas/model.py`` @cdd19b9 and mit-han-lab/proxylessnas
``search/models/super_nets/super_proxyless.py`` @bf58b5c): a 3x3 stride-2 conv (BN, ReLU6), a fixed 3x3 MBConv with
expansion 1, then **21 searchable layers** in 6 stages of depths 4, 4, 4, 4, 4, 1 with first-layer strides
2, 2, 2, 1, 2, 1, a 1x1 conv (BN, ReLU6) to the last width, global average pooling and a linear classifier - the
stem/head style of MobileNetV2 (the ``mobilenet_v2`` workload). Each searchable layer chooses an inverted-residual
MBConv with kernel {3, 5, 7} x expansion {3, 6}; the first layer of each stage (UNAS ``channel_change_layers``
1, 5, 9, 13, 17, 21) must be an MBConv, the other 15 may also be ``mic_zero`` (the layer is skipped: its block
returns its input), which is ProxylessNAS' rule "Zero only where stride 1 and in == out". Op names and the order of
the choices are UNAS' (``proxylessnas/genotypes.py`` ``BLOCK_PRIMITIVES`` / ``REDUCTION_PRIMITIVES``).

MBConv (UNAS ``proxylessnas/operations.py`` ``MBInvertedConvLayer``): 1x1 expand (if expansion > 1) -> BN -> ReLU6 ->
kxk depthwise (stride, padding k // 2) -> BN -> ReLU6 -> 1x1 linear -> BN; BN eps 1e-3; identity residual when the
stride is 1 and widths match.

Widths (the ``widths`` preset): ``"unas"`` (default) is what UNAS searched and evaluated: ``use_proxylessnas_c=True``
in ``proxylessnas/model.py``, stem 40, first block 24, stages 32, 56, 112, 128, 256, 432, head 1728 - the widths of
the published ProxylessNAS-GPU net. ``"mobile"`` is ProxylessNAS' mobile search space (``imagenet_arch_search.py``
defaults ``--width_stages 24,40,80,96,192,320``, stem 32, first block 16, head 1280: MobileNetV2's widths).
``width_multiplier`` scales every width with ``int(round(c * m))`` (UNAS' rule).

Supernet (UNAS ``proxylessnas/model_search.py``): every searchable layer holds all its candidate blocks and returns
their weighted sum; ``mic_zero`` is followed by dropout 0.1 there (UNAS: "following P-DARTS"). Differences: none in
the architecture; the search supernet skips ops whose weight is ``<= prune_below`` (exact at the default 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

BN_EPS = 1e-3
ZERO = "mic_zero"
REDUCTION_PRIMITIVES: tuple[str, ...] = tuple(f"mic_{k}x{k}_e{e}" for k in (3, 5, 7) for e in (3, 6))
BLOCK_PRIMITIVES: tuple[str, ...] = (ZERO, *REDUCTION_PRIMITIVES)
NUM_LAYERS = 21


@dataclass(frozen=True)
class ProxylessWidths:
    """Channel widths of the space; depths and strides are shared by both presets."""

    stem: int
    first_block: int
    stages: tuple[int, ...]
    head: int
    source: str
    depths: tuple[int, ...] = (4, 4, 4, 4, 4, 1)
    strides: tuple[int, ...] = (2, 2, 2, 1, 2, 1)

    def scaled(self, multiplier: float) -> ProxylessWidths:
        def r(c: int) -> int:
            return max(1, int(round(c * multiplier)))

        stages = tuple(r(c) for c in self.stages)
        return ProxylessWidths(r(self.stem), r(self.first_block), stages, r(self.head), self.source)


WIDTHS: dict[str, ProxylessWidths] = {
    "unas": ProxylessWidths(40, 24, (32, 56, 112, 128, 256, 432), 1728, "NVlabs/unas proxylessnas/model.py C list"),
    "mobile": ProxylessWidths(
        32, 16, (24, 40, 80, 96, 192, 320), 1280, "mit-han-lab/proxylessnas search/imagenet_arch_search.py defaults"
    ),
}


def layer_plan(widths: ProxylessWidths) -> list[tuple[int, int, int, tuple[str, ...]]]:
    """Per searchable layer ``(c_in, c_out, stride, choices)``; stage-first layers cannot be ``mic_zero``."""
    plan, c_in = [], widths.first_block
    for c_out, depth, stride in zip(widths.stages, widths.depths, widths.strides, strict=True):
        for i in range(depth):
            plan.append((c_in, c_out, stride if i == 0 else 1, REDUCTION_PRIMITIVES if i == 0 else BLOCK_PRIMITIVES))
            c_in = c_out
    return plan


def _interleave(normal: Sequence[str], reduce: Sequence[str]) -> tuple[str, ...]:
    """UNAS' genotype (15 ``normal`` + 6 ``reduce`` ops) as one list in layer order."""
    first = {1, 5, 9, 13, 17, 21}  # UNAS channel_change_layers (1-based)
    n, r = iter(normal), iter(reduce)
    return tuple(next(r) if layer in first else next(n) for layer in range(1, NUM_LAYERS + 1))


_E3, _Z = "mic_3x3_e3", ZERO
_UNAS_GENO = "NVlabs/unas proxylessnas/genotypes.py @cdd19b9"
ARCHITECTURES: dict[str, tuple[str, ...]] = {
    "UNAS": _interleave(
        [_E3, _Z, _Z, _Z, _Z, _Z, _E3, _E3, _E3, _E3, _E3, _E3, "mic_7x7_e3", "mic_7x7_e3", "mic_7x7_e3"],
        ["mic_5x5_e3", "mic_7x7_e3", "mic_7x7_e3", "mic_5x5_e3", "mic_7x7_e6", "mic_7x7_e6"],
    ),
    "PROXYLESS_GPU": _interleave(
        [_Z, _Z, _Z, _Z, _Z, _E3, _Z, _Z, "mic_5x5_e3", _Z, _E3, "mic_5x5_e3", "mic_7x7_e6", "mic_7x7_e6"]
        + ["mic_5x5_e6"],
        ["mic_5x5_e3", "mic_7x7_e3", "mic_7x7_e6", "mic_5x5_e6", "mic_7x7_e6", "mic_7x7_e6"],
    ),
}
ARCHITECTURE_SOURCES = {
    "UNAS": f"{_UNAS_GENO} UNAS (found by UNAS with a 10 ms GPU latency target)",
    "PROXYLESS_GPU": f"{_UNAS_GENO} PROXYLESS_GPU (the published ProxylessNAS-GPU net in this space)",
}


def parse_architecture(spec: str | Sequence[str], widths: ProxylessWidths | None = None) -> tuple[str, ...]:
    """A registered architecture name or a comma list of 21 op names (``mic_`` prefix optional); validated."""
    if isinstance(spec, str) and spec in ARCHITECTURES:
        ops: Sequence[str] = ARCHITECTURES[spec]
    elif isinstance(spec, str):
        ops = [s.strip() for s in spec.split(",") if s.strip()]
        if len(ops) == 1:
            raise ValueError(f"Unknown architecture {spec!r}. Registered: {', '.join(ARCHITECTURES)}; or 21 op names")
    else:
        ops = list(spec)
    ops = [op if op.startswith("mic_") else f"mic_{op}" for op in ops]
    plan = layer_plan(widths or WIDTHS["unas"])
    if len(ops) != len(plan):
        raise ValueError(f"architecture needs {len(plan)} ops (one per searchable layer), got {len(ops)}")
    for layer, (op, (_, _, _, choices)) in enumerate(zip(ops, plan, strict=True), start=1):
        if op not in choices:
            raise ValueError(f"layer {layer}: {op!r} is not allowed there; choose from {', '.join(choices)}")
    return tuple(ops)


class MBConv(nn.Module):
    """Inverted residual block (ProxylessNAS ``MobileInvertedResidualBlock`` with an ``MBInvertedConvLayer``)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = int(round(c_in * expansion))
        layers: list[nn.Module] = []
        if expansion > 1:
            layers += [
                nn.Conv2d(c_in, hidden, 1, bias=False),
                nn.BatchNorm2d(hidden, eps=BN_EPS),
                nn.ReLU6(inplace=True),
            ]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden, eps=BN_EPS),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, eps=BN_EPS),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.residual else y


def make_block(op: str, c_in: int, c_out: int, stride: int) -> nn.Module:
    """``mic_KxK_eE`` -> :class:`MBConv`; ``mic_zero`` -> identity (the layer is skipped)."""
    if op == ZERO:
        if stride != 1 or c_in != c_out:
            raise ValueError("mic_zero needs stride 1 and equal widths")
        return nn.Identity()
    kernel, expansion = op.removeprefix("mic_").split("_e")
    return MBConv(c_in, c_out, int(kernel.split("x")[0]), stride, int(expansion))


def _conv_bn_relu6(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out, eps=BN_EPS),
        nn.ReLU6(inplace=True),
    )


class _ProxylessBase(nn.Module):
    """Stem (3x3/2 conv + MBConv e1) and head (1x1 conv, pool, linear) shared by the supernet and eval net."""

    def __init__(
        self, num_classes: int, widths: str | ProxylessWidths, width_multiplier: float, in_channels: int
    ) -> None:
        super().__init__()
        base = WIDTHS[widths] if isinstance(widths, str) else widths
        self.widths = base.scaled(width_multiplier)
        w = self.widths
        self.stem = nn.Sequential(_conv_bn_relu6(in_channels, w.stem, 3, 2), MBConv(w.stem, w.first_block, 3, 1, 1))
        self.plan = layer_plan(w)
        self.feature_mix_layer = _conv_bn_relu6(w.stages[-1], w.head, 1, 1)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(w.head, num_classes)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pooling(self.feature_mix_layer(x)).flatten(1))


class ProxylessEvalNetwork(_ProxylessBase):
    """A discrete network from 21 chosen ops; ``mic_zero`` layers are left out of ``blocks``."""

    def __init__(
        self,
        architecture: str | Sequence[str],
        num_classes: int,
        widths: str | ProxylessWidths = "unas",
        width_multiplier: float = 1.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__(num_classes, widths, width_multiplier, in_channels)
        self.architecture = parse_architecture(architecture, self.widths)
        self.blocks = nn.Sequential(
            *(
                make_block(op, c_in, c_out, s)
                for op, (c_in, c_out, s, _) in zip(self.architecture, self.plan, strict=True)
                if op != ZERO
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class ProxylessMixedLayer(nn.Module):
    """All candidate blocks of one searchable layer, each with its own residual (UNAS ``MixedOp``)."""

    def __init__(self, c_in: int, c_out: int, stride: int, choices: Sequence[str], zero_dropout: float) -> None:
        super().__init__()
        self.choices = tuple(choices)
        blocks = [make_block(op, c_in, c_out, stride) for op in choices]
        self.ops = nn.ModuleList(
            nn.Dropout(zero_dropout) if op == ZERO else b for op, b in zip(choices, blocks, strict=True)
        )

    def forward(self, x: torch.Tensor, weights: torch.Tensor, prune_below: float = 0.0) -> torch.Tensor:
        peak = weights.detach().abs()
        active = (peak.amax(dim=0) if peak.dim() == 2 else peak).gt(prune_below).tolist()
        total: torch.Tensor | None = None
        for k, op in enumerate(self.ops):
            if active[k]:
                w = weights[..., k]
                y = (w.view(-1, 1, 1, 1) if w.dim() else w) * op(x)
                total = y if total is None else total + y
        if total is None:
            raise ValueError("every choice of a layer has zero weight; a layer must keep one op")
        return total


class ProxylessSearchNetwork(_ProxylessBase):
    """The supernet. ``forward(x, weights)``: ``weights`` is a sequence of 21 tensors in layer order, layer ``l``'s
    of shape ``[len(choices[l])]`` or ``[batch, len(choices[l])]`` (relaxed or one-hot samples over
    ``self.choices[l]``); ``None`` uses the uniform distribution over each layer's choices.
    """

    def __init__(
        self,
        num_classes: int,
        widths: str | ProxylessWidths = "unas",
        width_multiplier: float = 1.0,
        in_channels: int = 3,
        zero_dropout: float = 0.1,
        prune_below: float = 0.0,
    ) -> None:
        super().__init__(num_classes, widths, width_multiplier, in_channels)
        self.layers = nn.ModuleList(ProxylessMixedLayer(ci, co, s, ch, zero_dropout) for ci, co, s, ch in self.plan)
        self.prune_below = prune_below

    @property
    def choices(self) -> list[tuple[str, ...]]:
        return [choices for *_, choices in self.plan]

    def uniform_weights(self) -> list[torch.Tensor]:
        return [torch.full((len(c),), 1.0 / len(c)) for c in self.choices]

    def forward(self, x: torch.Tensor, weights: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        weights = self.uniform_weights() if weights is None else weights
        if len(weights) != len(self.layers):
            raise ValueError(f"weights: need {len(self.layers)} tensors (one per searchable layer), got {len(weights)}")
        x = self.stem(x)
        for layer, choices, w in zip(self.layers, self.choices, weights, strict=True):
            if w.shape[-1] != len(choices):
                raise ValueError(f"weights for a layer with choices {choices} must end in {len(choices)}")
            x = layer(x, w.to(device=x.device, dtype=x.dtype), self.prune_below)
        return self.head(x)

    def discretize(self, weights: Sequence[torch.Tensor]) -> tuple[str, ...]:
        """The op names of the argmax choice of each layer (for :class:`ProxylessEvalNetwork`)."""
        return tuple(
            choices[int(w.reshape(-1, w.shape[-1]).sum(0).argmax())]
            for choices, w in zip(self.choices, weights, strict=True)
        )
