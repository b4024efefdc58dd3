"""ResNet-18/34/50/101 (He et al., arXiv 1512.03385) as implemented by torchvision.

Faithful: torchvision's architecture unchanged at every profile (7x7 stem, max-pool, bottleneck blocks); only the
classifier's width follows the dataset's class count. Paper recipe: torchvision's reference ImageNet script
(SGD 0.1, momentum 0.9, wd 1e-4, step x0.1 every 30 epochs, 90 epochs, batch 256, 224x224).
Tiny profile: same architecture at 32x32 input on a few thousand images for a few epochs (recorded in the recipe).
Reference numbers: torchvision's IMAGENET1K_V1 weights' published metrics.
"""

from __future__ import annotations

from typing import ClassVar

import torchvision
from torch import nn

from workloads.base import Recipe, Reference, WorkloadInfo
from workloads.vision import IMAGENET_ARCH_DATASETS, ImageClassificationWorkload

TORCHVISION_SRC = "torchvision.models.{}_Weights.IMAGENET1K_V1.meta"
PAPER_RECIPE = Recipe(
    epochs=90,
    batch_size=256,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    schedule="step",
    step_size=30,
    gamma=0.1,
    image_size=224,
    source="torchvision references/classification (ResNet recipe, He et al. 2016)",
)
TINY_RECIPE = Recipe(
    epochs=4,
    batch_size=64,
    optimizer="adam",
    lr=1e-3,
    momentum=0.9,
    weight_decay=0.0,
    schedule="cosine",
    image_size=32,
    max_train_samples=6000,
    max_val_samples=2000,
    source="tiny CPU profile: same architecture, 32x32 input, <= 6000 training images, 4 epochs, Adam 1e-3 "
    "(SGD 0.05 diverged on 23 steps/epoch from scratch; Adam reached 95.8 % top-1 on digits in 4 epochs)",
)

# (name, builder, top-1, top-5, params, GFLOPs at 224) from torchvision's published weight metadata
_VARIANTS = {
    "resnet18": (69.758, 89.078, 11_689_512, 1.814),
    "resnet34": (73.314, 91.420, 21_797_672, 3.664),
    "resnet50": (76.130, 92.862, 25_557_032, 4.089),
    "resnet101": (77.374, 93.546, 44_549_160, 7.801),
}


def _references(name: str) -> tuple[Reference, ...]:
    top1, top5, params, gflops = _VARIANTS[name]
    src = TORCHVISION_SRC.format(name.replace("resnet", "ResNet"))
    return (
        Reference("top1", top1, src, "ImageNet val, single crop 224"),
        Reference("top5", top5, src, "ImageNet val, single crop 224"),
        Reference("params", params, src),
        Reference("gmacs", gflops, src, "torchvision's 'GFLOPS' field counts multiply-adds"),
    )


class TorchvisionResNet(ImageClassificationWorkload):
    arch: ClassVar[str]
    recipes = {"tiny": TINY_RECIPE, "paper": PAPER_RECIPE}

    def make_model(self, num_classes: int) -> nn.Module:
        return getattr(torchvision.models, self.arch)(weights=None, num_classes=num_classes)


def _make(arch: str) -> type[TorchvisionResNet]:
    info = WorkloadInfo(
        name=arch,
        paper="1512.03385",
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=IMAGENET_ARCH_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=_references(arch),
        description=f"torchvision {arch} (He et al. 2016)",
    )
    return type(f"ResNet{arch[6:]}Workload", (TorchvisionResNet,), {"arch": arch, "info": info, "__module__": __name__})


ResNet18 = _make("resnet18")
ResNet34 = _make("resnet34")
ResNet50 = _make("resnet50")
ResNet101 = _make("resnet101")
