"""Shared machinery of image-classification workloads: data, loss, top-1/top-5, example inputs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cached_property
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from workloads.base import Workload
from workloads.data.fine_grained import NUM_CLASSES as FINE_GRAINED_CLASSES
from workloads.data.images import IMAGE_DATASETS, ImageDatasetSpec, ImageSet, image_collate

VISION_DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100", "imagenet")
# The PackNet / Piggyback transfer datasets (workloads/data/fine_grained.py), accepted by their papers' networks
# (VGG-16, ResNet-50): the tasks a continual run adds to an ImageNet backbone (harness/tasks.py).
FINE_GRAINED_DATASETS = tuple(FINE_GRAINED_CLASSES)
IMAGENET_ARCH_DATASETS = VISION_DATASETS + FINE_GRAINED_DATASETS


class ImageClassificationWorkload(Workload):
    """Base of image classifiers. Subclasses implement ``make_model(num_classes)``.

    Preprocessing: images are scaled to [0, 1], resized (bilinear, antialiased) to the recipe's ``image_size``
    (default: the dataset's native size), grey images are repeated to 3 channels for ImageNet-architecture models,
    and normalised with the dataset's channel mean/std. The same preprocessing is used for every backend.
    """

    model_channels = 3
    paper_image_size = 224
    # set by use_task_data() for one task of a continual sequence (harness/tasks.py)
    _task_spec: ImageDatasetSpec | None = None
    _classes: tuple[int, ...] | None = None

    def make_model(self, num_classes: int) -> nn.Module:
        raise NotImplementedError(f"{type(self).__name__} must implement make_model()")

    def use_task_data(
        self, name: str, classes: Sequence[int] | None = None, spec: ImageDatasetSpec | None = None
    ) -> None:
        """Serve one task of a continual sequence (harness/tasks.py) instead of the whole dataset.

        Args:
            name: the task's name (e.g. ``digits[0-4]``); it becomes ``dataset``, so the dense baselines of different
                tasks never share a cache key.
            classes: original labels to keep, remapped to 0..k-1 in this order (None keeps every class).
            spec: a reader that is not registered (MNIST-format files under --data-root), else the current one.
        """
        self._task_spec = spec or self.spec
        self._classes = tuple(int(c) for c in classes) if classes is not None else None
        self.dataset = name
        for cached in ("_splits", "collate"):
            self.__dict__.pop(cached, None)

    @property
    def spec(self) -> ImageDatasetSpec:
        return self._task_spec or IMAGE_DATASETS[self.dataset]

    @property
    def num_classes(self) -> int:
        return len(self._classes) if self._classes is not None else self.spec.num_classes

    @property
    def image_size(self) -> int:
        return self.recipe.image_size or self.spec.native_size

    def build_model(self) -> nn.Module:
        return self.make_model(self.num_classes)

    @cached_property
    def _splits(self) -> dict[str, ImageSet]:
        limits = {"train": self.recipe.max_train_samples, "val": self.recipe.max_val_samples}
        return {
            split: select_classes(self.spec.reader(split, self.data_root, size=self.image_size), self._classes).subset(
                limit
            )
            for split, limit in limits.items()
        }

    def split(self, split: str) -> ImageSet:
        if split not in ("train", "val"):
            raise ValueError(f"Unknown split {split!r}; use 'train' or 'val'")
        return self._splits[split]

    def dataloader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        data = self.split(split)
        shuffle = (split == "train") if shuffle is None else shuffle
        generator = torch.Generator().manual_seed(torch.initial_seed() % 2**63)
        return DataLoader(
            data,
            batch_size=batch_size or self.recipe.batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=self.collate,
            drop_last=False,
        )

    @cached_property
    def collate(self) -> Any:
        return image_collate(self.image_size, self.model_channels, self.spec.mean, self.spec.std)

    def example_inputs(
        self, batch_size: int, device: str | torch.device = "cpu", offset: int = 0
    ) -> tuple[torch.Tensor, ...]:
        data = self.split("val")
        n = len(data)
        start = (offset * batch_size) % n
        items = [data[(start + i) % n] for i in range(batch_size)]
        images, _ = self.collate(items)
        return (images.to(device),)

    def paper_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        size = self.paper_image_size
        generator = torch.Generator().manual_seed(0)
        return (torch.randn(batch_size, self.model_channels, size, size, generator=generator),)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        images, labels = batch
        return F.cross_entropy(model(images), labels, label_smoothing=self.recipe.label_smoothing)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, loader: Iterable, device: str | torch.device) -> dict[str, float]:
        was_training = model.training
        model.eval()
        correct1 = correct5 = total = 0
        loss_sum = 0.0
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = model(images)
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += int((top[:, 0] == labels).sum())
            correct5 += int((top == labels[:, None]).any(dim=1).sum())
            total += int(labels.numel())
        model.train(was_training)
        metrics = {"top1": 100.0 * correct1 / total, "loss": loss_sum / total, "samples": float(total)}
        if self.num_classes > 5:
            metrics["top5"] = 100.0 * correct5 / total
        return metrics

    def preprocessing(self) -> dict[str, Any]:
        return {
            "scale": "uint8 / 255",
            "resize": f"bilinear antialiased to {self.image_size}x{self.image_size}",
            "channels": f"{self.spec.in_channels} -> {self.model_channels} (repeat)"
            if self.spec.in_channels != self.model_channels
            else str(self.model_channels),
            "normalize": {"mean": list(self.spec.mean), "std": list(self.spec.std)},
            "train_samples": len(self.split("train")),
            "val_samples": len(self.split("val")),
            "dataset_source": self.spec.source,
            **({"classes": list(self._classes), "labels": "remapped to 0..k-1"} if self._classes is not None else {}),
        }


class _Relabelled(torch.utils.data.Dataset):
    """Items of a lazily loaded set with their labels mapped through ``table`` (original label -> task label)."""

    def __init__(self, items: torch.utils.data.Dataset, table: dict[int, int]) -> None:
        self.items, self.table = items, table

    def __len__(self) -> int:
        return len(self.items)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image, label = self.items[index]
        return image, self.table[int(label)]


def select_classes(data: ImageSet, classes: Sequence[int] | None) -> ImageSet:
    """The items of ``classes`` only, labels remapped to 0..k-1 in the order given (a continual task's split)."""
    if classes is None:
        return data
    table = {int(c): i for i, c in enumerate(classes)}
    lookup = torch.full((int(max(int(data.labels.max()), *table)) + 1,), -1, dtype=torch.long)
    for original, new in table.items():
        lookup[original] = new
    keep = torch.nonzero(lookup[data.labels] >= 0).flatten()
    labels = lookup[data.labels[keep]]
    if data.images is not None:
        return ImageSet(data.images[keep], labels)
    subset = torch.utils.data.Subset(data.loader, keep.tolist())  # type: ignore[arg-type]
    return ImageSet(None, labels, _Relabelled(subset, table))
