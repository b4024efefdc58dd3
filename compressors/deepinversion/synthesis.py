"""DeepInversion image synthesis (Yin et al., CVPR'20, arXiv 1912.08795, section 3.2 eq. 3-6; ADI section 3.3).

A batch x (initialised N(0, 1) in the teacher's normalised input space) is optimised with Adam so that the teacher,
in eval mode, classifies it as the targets while its BN statistics match the stored running statistics::

    L = a_main CE(T(x_j), y) + a_f (m_1 R_1 + sum_l R_l) + a_tv1 R_TV1 + a_tv2 R_TV2 + a_l2 R_l2 [+ a_adi R_compete]

with x_j = flip(roll(x, random shift in [-J, J]^2)) (the jitter and flip are applied to the optimised batch itself,
then the losses read the jittered copy). Settings follow NVlabs/DeepInversion: ``cifar`` = the README's paper command
for ``cifar10/deepinversion_cifar10.py`` (bs 256, 2k iterations, lr 0.05, r_feature 10, TV-L2 2.5e-5, jitter 2, no
flip, constant lr, default Adam betas); ``imagenet0/1/2`` = ``deepinversion.py`` setting_id 0/1/2 with the
``imagenet_inversion.py`` coefficients (setting 0: 2k iterations on a 2x average-pooled view with jitter J/2, then
1k at full resolution; betas (0.5, 0.9) and clipping for 0/1; setting 2: 20k iterations, betas (0.9, 0.999), no
clipping; cosine lr with a 100-iteration warm-up, restarted, with a fresh Adam, at every resolution stage).

Differences, on purpose: (1) ``cifar`` clips to the valid pixel range like the ImageNet settings (the CIFAR script
does not), so that every stored image is an image; (2) keep-best stores the batch that produced the lowest loss (the
official ImageNet loop clones the batch after the step that followed it; the CIFAR loop keeps a reference, so it
returns the last batch); (3) the jitter and flip draws come from a seeded generator, so synthesis is deterministic
for a seed on CPU; (4) at an input size other than the setting's (32 px CIFAR, 224 px ImageNet) the jitter is
scaled with it, rounded down (2 px at 32 px becomes 1 px at 16 px and none at 8 px): a roll is a fixed fraction of
the image in the official runs, and a teacher trained without shift augmentation cannot be asked for more.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from compressors.deepinversion.priors import BatchNormStatistics, competition, image_l2, total_variation
from harness.progress import bar_disable


@dataclass(frozen=True)
class SynthesisSettings:
    """One official optimisation setting. ``stages`` = ((downsample factor, iterations), ...)."""

    name: str
    stages: tuple[tuple[int, int], ...]
    batch_size: int
    lr: float
    betas: tuple[float, float]
    cosine_lr: bool
    warmup: int
    jitter: int
    flip: bool
    clip: bool
    r_feature: float
    first_bn_multiplier: float
    tv_l1: float
    tv_l2: float
    l2: float
    main_loss_multiplier: float
    source: str
    resolution: int = 32  # the input size the official setting was written for

    def for_resolution(self, size: int) -> SynthesisSettings:
        """The setting at input ``size``: the jitter scaled by size / resolution (module docstring, difference 4)."""
        if size == self.resolution:
            return self
        return dataclasses.replace(self, jitter=int(self.jitter * size / self.resolution + 1e-9), resolution=size)

    @property
    def iterations(self) -> int:
        return sum(n for _, n in self.stages)

    def with_iterations(self, total: int) -> SynthesisSettings:
        """The same stages scaled to ``total`` iterations (each stage keeps its share, at least one iteration)."""
        scale = total / self.iterations
        stages = tuple((factor, max(1, round(n * scale))) for factor, n in self.stages)
        return dataclasses.replace(self, stages=stages, warmup=min(self.warmup, max(1, total // 20)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_IMAGENET = dict(
    resolution=224, batch_size=64, lr=0.2, cosine_lr=True, warmup=100, jitter=30, flip=True, r_feature=0.05,
    first_bn_multiplier=10.0, tv_l1=0.0, tv_l2=1e-4, l2=1e-5, main_loss_multiplier=1.0,
)  # fmt: skip
_IMAGENET_SRC = "NVlabs/DeepInversion imagenet_inversion.py L179-206 + deepinversion.py L211-241 (setting_id {})"
SETTINGS: dict[str, SynthesisSettings] = {
    "cifar": SynthesisSettings(
        name="cifar", stages=((1, 2000),), batch_size=256, lr=0.05, betas=(0.9, 0.999), cosine_lr=False, warmup=0,
        jitter=2, flip=False, clip=True, r_feature=10.0, first_bn_multiplier=1.0, tv_l1=0.0, tv_l2=2.5e-5, l2=0.0,
        main_loss_multiplier=1.0, source="NVlabs/DeepInversion cifar10/README.md paper command",
    ),
    "imagenet0": SynthesisSettings(
        name="imagenet0", stages=((2, 2000), (1, 1000)), betas=(0.5, 0.9), clip=True, source=_IMAGENET_SRC.format(0),
        **_IMAGENET,  # type: ignore[arg-type]
    ),
    "imagenet1": SynthesisSettings(
        name="imagenet1", stages=((1, 2000),), betas=(0.5, 0.9), clip=True, source=_IMAGENET_SRC.format(1),
        **_IMAGENET,  # type: ignore[arg-type]
    ),
    "imagenet2": SynthesisSettings(
        name="imagenet2", stages=((1, 20000),), betas=(0.9, 0.999), clip=False, source=_IMAGENET_SRC.format(2),
        **_IMAGENET,  # type: ignore[arg-type]
    ),
}  # fmt: skip


@dataclass
class SynthesisResult:
    """A synthesized batch (normalised input space, CPU) and how it was obtained."""

    images: torch.Tensor
    targets: torch.Tensor
    history: list[dict[str, float]] = field(default_factory=list)
    initial: dict[str, float] = field(default_factory=dict)  # terms at the N(0,1) start, no jitter
    final: dict[str, float] = field(default_factory=dict)  # terms at the kept batch, no jitter
    best_loss: float = math.nan
    iterations: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "iterations": self.iterations,
            "images": int(self.images.shape[0]),
            "best_loss": self.best_loss,
            "initial": self.initial,
            "final": self.final,
            "r_feature_reduction": self.initial["r_feature"] / max(self.final["r_feature"], 1e-30),
        }


def pixel_range(mean: Sequence[float], std: Sequence[float], channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel bounds [C] of a [0, 1] image after ``(x - mean) / std`` (single-value stats broadcast)."""
    m = torch.tensor(mean, dtype=torch.float32).expand(channels) if len(mean) == 1 else torch.tensor(mean)
    s = torch.tensor(std, dtype=torch.float32).expand(channels) if len(std) == 1 else torch.tensor(std)
    return (0.0 - m) / s, (1.0 - m) / s


def clip_to_range(x: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return torch.max(torch.min(x, high.view(shape).to(x)), low.view(shape).to(x))


def cosine_lr(base: float, warmup: int, total: int, step: int) -> float:
    """The official ``lr_cosine_policy``: linear warm-up over ``warmup`` iterations, then half a cosine to 0."""
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1))) * base


def balanced_targets(count: int, num_classes: int, offset: int = 0) -> torch.Tensor:
    """Labels cycling through the classes (the CIFAR script's ``[0..9] * 25 + [0..5]``)."""
    return (torch.arange(count) + offset) % num_classes


@dataclass
class Synthesizer:
    """Runs one setting on a teacher. ``adi_scale`` > 0 adds the ADI competition against ``student``."""

    teacher: nn.Module
    settings: SynthesisSettings
    low: torch.Tensor
    high: torch.Tensor
    adi_scale: float = 0.0
    log_every: int = 50
    device: str = "cpu"

    def terms(
        self, x: torch.Tensor, targets: torch.Tensor, bn: BatchNormStatistics, student: nn.Module | None
    ) -> dict[str, torch.Tensor]:
        """Every loss term of eq. 3 (+ ADI) on the batch ``x`` as given (jitter is applied by the caller)."""
        s = self.settings
        logits = self.teacher(x)
        tv1, tv2 = total_variation(x)
        terms = {
            "ce": F.cross_entropy(logits, targets),
            "r_feature_weighted": bn.loss(),
            "r_feature": bn.unscaled().detach(),
            "tv_l1": tv1,
            "tv_l2": tv2,
            "l2": image_l2(x),
        }
        total = s.main_loss_multiplier * terms["ce"] + s.r_feature * terms["r_feature_weighted"]
        total = total + s.tv_l1 * tv1 + s.tv_l2 * tv2 + s.l2 * terms["l2"]
        if self.adi_scale and student is not None:
            terms["competition"] = competition(student(x), logits)
            total = total + self.adi_scale * terms["competition"]
        terms["teacher_acc"] = (logits.argmax(1) == targets).float().mean().detach()
        terms["total"] = total
        return terms

    def run(
        self, shape: Sequence[int], targets: torch.Tensor, seed: int, student: nn.Module | None = None,
        start: torch.Tensor | None = None, label: str = "synthesis",
    ) -> SynthesisResult:  # fmt: skip
        """Optimise one batch of ``shape`` [B, C, H, W] towards ``targets``; deterministic for ``seed``."""
        s, device = self.settings, self.device
        self.teacher.eval()
        if student is not None:
            student.eval()
        generator = torch.Generator().manual_seed(seed)
        draws = random.Random(seed)
        x = start.clone() if start is not None else torch.randn(tuple(shape), generator=generator)
        x = x.to(device).requires_grad_(True)
        targets = targets.to(device)
        result = SynthesisResult(images=x.detach().cpu(), targets=targets.cpu())
        best = math.inf
        with BatchNormStatistics(self.teacher, s.first_bn_multiplier) as bn:
            result.initial = self._scalars(x, targets, bn, student)
            bar = tqdm(total=s.iterations, desc=f"[{label}]", leave=False, disable=bar_disable())
            step = 0
            for factor, iterations in s.stages:
                optimizer = torch.optim.Adam([x], lr=s.lr, betas=s.betas, eps=1e-8)
                limit = s.jitter // factor
                for local in range(iterations):
                    if s.cosine_lr:
                        for group in optimizer.param_groups:
                            group["lr"] = cosine_lr(s.lr, s.warmup, iterations, local)
                    view = F.avg_pool2d(x, factor) if factor > 1 else x
                    view = torch.roll(
                        view, shifts=(draws.randint(-limit, limit), draws.randint(-limit, limit)), dims=(2, 3)
                    )
                    if s.flip and draws.random() > 0.5:
                        view = torch.flip(view, dims=(3,))
                    optimizer.zero_grad(set_to_none=True)
                    terms = self.terms(view, targets, bn, student)
                    loss = float(terms["total"].detach())
                    if loss < best:
                        best, result.images = loss, x.detach().cpu().clone()
                    terms["total"].backward()
                    optimizer.step()
                    if s.clip:
                        with torch.no_grad():
                            x.copy_(clip_to_range(x, self.low, self.high))
                    step += 1
                    if step % self.log_every == 0 or step == s.iterations:
                        result.history.append(
                            {"iteration": float(step), **{k: float(v.detach()) for k, v in terms.items()}}
                        )
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", r_feature=f"{float(terms['r_feature']):.3f}")
            bar.close()
            kept = result.images.to(device)
            result.final = self._scalars(kept, targets, bn, student)
        result.best_loss, result.iterations = best, s.iterations
        return result

    @torch.no_grad()
    def _scalars(
        self, x: torch.Tensor, targets: torch.Tensor, bn: BatchNormStatistics, student: nn.Module | None
    ) -> dict[str, float]:
        return {k: float(v) for k, v in self.terms(x.detach(), targets, bn, student).items()}
