"""VGG-16 and VGG-16-BN (Simonyan & Zisserman, arXiv 1409.1556) as implemented by torchvision.

Faithful: torchvision's ``vgg16`` / ``vgg16_bn`` unchanged at every profile (13 3x3 convs in 5 stages, each stage
ending in a 2x2 max-pool, an adaptive 7x7 average pool, then 4096-4096-classes fully connected layers with dropout
0.5); only the classifier's width follows the dataset's class count. Because of the adaptive pool, inputs smaller
than 224 work (torchvision's ``min_size`` is 32x32): the last feature map is replicated to 7x7, so the FC layers keep
their 25088 inputs and their 123.6 M multiply-adds (1000 classes) at any resolution.

Paper recipe: torchvision's reference script ``references/classification/train.py`` with the README's "AlexNet and
VGG" command (``--lr 1e-2``; defaults: SGD momentum 0.9, weight decay 1e-4, StepLR 30 / 0.1, 90 epochs, 32 images
per GPU on 8 GPUs = batch 256). Tiny profile: 32x32 input (the smallest torchvision supports) and a few epochs.
Reference numbers: torchvision's IMAGENET1K_V1 weight metadata (``Weights.meta``).
"""

from __future__ import annotations

from typing import ClassVar

import torchvision
from torch import nn

from workloads.base import Recipe, Reference, WorkloadInfo
from workloads.vision import IMAGENET_ARCH_DATASETS, ImageClassificationWorkload

TORCHVISION_META = "torchvision.models.{}.IMAGENET1K_V1.meta"
TORCHVISION_RECIPE_SRC = (
    "torchvision references/classification train.py defaults (momentum 0.9, wd 1e-4, StepLR 30/0.1, 90 epochs, "
    "32 per GPU x 8 GPUs = batch 256) with the README's"
)


def torchvision_references(weights: str, top1: float, top5: float, params: int, gmacs: float) -> tuple[Reference, ...]:
    """References from ``torchvision.models.<weights>.IMAGENET1K_V1.meta`` (``_metrics``, ``num_params``, ``_ops``)."""
    src = TORCHVISION_META.format(weights)
    return (
        Reference("top1", top1, src, "ImageNet-1K val, single crop 224"),
        Reference("top5", top5, src, "ImageNet-1K val, single crop 224"),
        Reference("params", params, src, "1000 classes"),
        Reference("gmacs", gmacs, src, "torchvision's 'GFLOPS' (_ops) field counts multiply-adds, 224x224"),
    )


PAPER_RECIPE = Recipe(
    epochs=90,
    batch_size=256,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=1e-4,
    schedule="step",
    step_size=30,
    gamma=0.1,
    image_size=224,
    source=f"{TORCHVISION_RECIPE_SRC} 'AlexNet and VGG' command --lr 1e-2",
)
TINY_RECIPE = Recipe(
    epochs=3,
    batch_size=64,
    optimizer="adam",
    lr=1e-4,
    momentum=0.9,
    weight_decay=1e-4,
    schedule="cosine",
    image_size=32,
    max_train_samples=3000,
    max_val_samples=1000,
    source="tiny CPU profile: same architecture, 32x32 input (torchvision's min_size), <= 3000 images, 3 epochs, "
    "Adam 1e-4 (plain VGG/AlexNet without BN stay at chance with SGD in a few epochs)",
)

# name -> (weights enum, top-1, top-5, params, GMACs at 224) from torchvision's published weight metadata
_VARIANTS = {
    "vgg16": ("VGG16_Weights", 71.592, 90.382, 138_357_544, 15.47),
    "vgg16_bn": ("VGG16_BN_Weights", 73.36, 91.516, 138_365_992, 15.47),
}


class TorchvisionVGG(ImageClassificationWorkload):
    """Base of the VGG workloads; subclasses set ``arch``."""

    arch: ClassVar[str]
    recipes = {"tiny": TINY_RECIPE, "paper": PAPER_RECIPE}

    def make_model(self, num_classes: int) -> nn.Module:
        return getattr(torchvision.models, self.arch)(weights=None, num_classes=num_classes)


def _make(arch: str) -> type[TorchvisionVGG]:
    weights, top1, top5, params, gmacs = _VARIANTS[arch]
    info = WorkloadInfo(
        name=arch,
        paper="1409.1556",
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=IMAGENET_ARCH_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=torchvision_references(weights, top1, top5, params, gmacs),
        description=f"torchvision {arch} (Simonyan & Zisserman 2015)",
    )
    cls_name = "VGG16BNWorkload" if arch.endswith("_bn") else "VGG16Workload"
    return type(cls_name, (TorchvisionVGG,), {"arch": arch, "info": info, "__module__": __name__})


VGG16 = _make("vgg16")
VGG16BN = _make("vgg16_bn")
