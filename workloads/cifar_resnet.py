"""CIFAR ResNet-18/34 (He et al., arXiv 1512.03385), the variant used by DeepInversion's teacher/student and LNS-Madam.

Architecture: torchvision's ``ResNet`` with ``BasicBlock`` and [2, 2, 2, 2] (ResNet-18) or [3, 4, 6, 3] (ResNet-34)
blocks, with the ImageNet stem (7x7 stride-2 conv + 3x3 max-pool) replaced by a 3x3 stride-1 conv (64 channels,
no bias) followed by BN and ReLU and **no** max-pool. This is the network of kuangliu/pytorch-cifar
``models/resnet.py``, which DeepInversion copies via DAFL (NVlabs/DeepInversion ``cifar10/resnet_cifar.py``): 1x1
conv + BN projection shortcuts, global 4x4 average pool at 32x32 input (torchvision's adaptive average pool gives
the same result there), one linear classifier. Native resolution 32x32.

Faithful: layer shapes, parameter count and MACs of the reference CIFAR network. Differs: initialisation is
torchvision's (Kaiming normal fan-out for convs, BN weight 1 / bias 0) rather than PyTorch's default init used by
the reference code; grey datasets are repeated to 3 channels so the stem is unchanged.

Paper recipe: kuangliu/pytorch-cifar ``main.py`` (SGD lr 0.1, momentum 0.9, weight decay 5e-4,
``CosineAnnealingLR(T_max=200)`` over 200 epochs, batch 128, cross-entropy), the usual recipe for this network.
DeepInversion's ResNet-34 teacher was trained with DAFL's script and reaches 95.42 % on CIFAR-10
(NVlabs/DeepInversion ``cifar10/README.md``).
Tiny profile: same architecture at 16x16 input (layer4 then works on 2x2 maps) for a few epochs on digits.
"""

from __future__ import annotations

from typing import ClassVar

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from workloads.base import Recipe, Reference, WorkloadInfo
from workloads.vision import ImageClassificationWorkload

CIFAR_RESNET_DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "cifar100")
PAPER_RECIPE = Recipe(
    epochs=200,
    batch_size=128,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="cosine",
    image_size=32,
    source="kuangliu/pytorch-cifar main.py: SGD 0.1, momentum 0.9, wd 5e-4, CosineAnnealingLR(T_max=200), batch 128",
)
TINY_RECIPE = Recipe(
    epochs=3,
    batch_size=64,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="cosine",
    image_size=16,
    max_train_samples=6000,
    max_val_samples=2000,
    source="tiny CPU profile: same architecture, 16x16 input, <= 6000 training images, 3 epochs",
)

_ARCH_SRC = "kuangliu/pytorch-cifar models/resnet.py (= NVlabs/DeepInversion cifar10/resnet_cifar.py @abafd38)"
# name -> (block counts, params with 10 classes, MACs at 32x32), counted by hand layer by layer from the reference
# definition (e.g. ResNet-18: stem 1,769,472 + layer1 4 x 37,748,736 + layers 2-4 3 x 134,217,728 + fc 5,120);
# they match the widely quoted 11.17 M params / 0.56 GMACs (ResNet-18) and 21.28 M / 1.16 GMACs (ResNet-34).
_VARIANTS: dict[str, tuple[list[int], int, int]] = {
    "cifar_resnet18": ([2, 2, 2, 2], 11_173_962, 555_422_720),
    "cifar_resnet34": ([3, 4, 6, 3], 21_282_122, 1_159_402_496),
}


def cifar_resnet(layers: list[int], num_classes: int) -> ResNet:
    """torchvision ResNet with BasicBlocks, a 3x3 stride-1 stem and no max-pool (the CIFAR variant)."""
    model = ResNet(BasicBlock, layers, num_classes=num_classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def _references(name: str) -> tuple[Reference, ...]:
    _, params, macs = _VARIANTS[name]
    refs = [
        Reference("params", params, _ARCH_SRC, "10 classes; derived from the architecture definition"),
        Reference("gmacs", macs / 1e9, _ARCH_SRC, "one 32x32 image; conv + linear multiply-adds"),
    ]
    if name == "cifar_resnet34":
        refs.insert(0, Reference("top1", 95.42, "NVlabs/DeepInversion cifar10/README.md", "CIFAR-10 teacher (DAFL)"))
    else:
        note = "CIFAR-10; trained with lr 0.1/0.01/0.001 for 150/100/100 epochs (the README's schedule)"
        refs.insert(0, Reference("top1", 93.02, "kuangliu/pytorch-cifar README.md", note))
    return tuple(refs)


class CifarResNet(ImageClassificationWorkload):
    """Base of the CIFAR ResNets; subclasses set ``layers``."""

    layers: ClassVar[list[int]]
    recipes = {"tiny": TINY_RECIPE, "paper": PAPER_RECIPE}
    paper_image_size = 32

    def make_model(self, num_classes: int) -> nn.Module:
        return cifar_resnet(self.layers, num_classes)


def _make(name: str) -> type[CifarResNet]:
    depth = name.removeprefix("cifar_resnet")
    info = WorkloadInfo(
        name=name,
        paper="1512.03385",
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=CIFAR_RESNET_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=_references(name),
        description=f"CIFAR ResNet-{depth}: torchvision BasicBlocks, 3x3 stride-1 stem, no max-pool",
    )
    attrs = {"layers": _VARIANTS[name][0], "info": info, "__module__": __name__}
    return type(f"CifarResNet{depth}Workload", (CifarResNet,), attrs)


CifarResNet18 = _make("cifar_resnet18")
CifarResNet34 = _make("cifar_resnet34")
