"""A data-free training set that any data-needing compressor can be handed (composition, not a copy of a method).

:class:`SyntheticTrainData` wraps a workload and replaces only its *training* split with synthesized images (already
in the model's normalised input space) and their labels. Everything else (the validation split, the metric, the
recipe, example inputs for measurement) stays the real workload's, so a compressor such as ``taylor`` computes its
criterion and fine-tunes on the synthesized set while every reported accuracy is on the real validation data.
With a ``teacher``, the loss is knowledge distillation (Hinton et al. 2015: ``tau^2 KL(p_T^tau || p_S^tau)``) on the
teacher's outputs for the same augmented batch, which is how DeepInversion trains its data-free students.
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from workloads.base import Workload


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``tau^2 KL(softmax(t/tau) || softmax(s/tau))``, batch mean."""
    log_p = F.log_softmax(student_logits / temperature, dim=1)
    q = F.softmax(teacher_logits / temperature, dim=1)
    return F.kl_div(log_p, q, reduction="batchmean") * temperature**2


class Augment:
    """Random roll by up to ``jitter`` pixels and an optional horizontal flip per batch, from a seeded generator."""

    def __init__(self, jitter: int, flip: bool, seed: int) -> None:
        self.jitter, self.flip, self.draws = jitter, flip, random.Random(seed)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.jitter:
            shift = (self.draws.randint(-self.jitter, self.jitter), self.draws.randint(-self.jitter, self.jitter))
            x = torch.roll(x, shifts=shift, dims=(2, 3))
        if self.flip and self.draws.random() > 0.5:
            x = torch.flip(x, dims=(3,))
        return x


class SyntheticTrainData:
    """``workload`` with its training split replaced by ``images``/``labels`` (see the module docstring)."""

    def __init__(
        self,
        workload: Workload,
        images: torch.Tensor,
        labels: torch.Tensor,
        teacher: nn.Module | None = None,
        temperature: float = 1.0,
        augment: Augment | None = None,
        source: str = "deepinversion",
    ) -> None:
        if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise ValueError(f"need as many labels as images (got {images.shape[0]} images, {labels.shape[0]} labels)")
        self.real = workload
        self.images, self.labels = images, labels
        self.teacher = teacher.eval() if teacher is not None else None
        self.temperature = temperature
        self.augment = augment
        self.source = source

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def dataloader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        if split != "train":
            return self.real.dataloader(split, batch_size=batch_size, shuffle=shuffle)
        generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        return DataLoader(
            TensorDataset(self.images, self.labels),
            batch_size=batch_size or self.real.recipe.batch_size,
            shuffle=True if shuffle is None else shuffle,
            generator=generator,
        )

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, labels = batch
        if self.augment is not None:
            images = self.augment(images)
        if self.teacher is None:
            return self.real.loss(model, (images, labels))
        with torch.no_grad():
            target = self.teacher(images)
        return kd_loss(model(images), target, self.temperature)

    def describe(self) -> dict[str, Any]:
        return {**self.real.describe(), "train_data": {"source": self.source, "images": int(self.images.shape[0])}}
