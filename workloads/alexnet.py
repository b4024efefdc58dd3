"""AlexNet (Krizhevsky et al., NeurIPS 2012; the "one weird trick" variant, arXiv 1404.5997) and AlexNet-BN.

``alexnet``: torchvision's model unchanged (convs 64-192-384-256-256, adaptive 6x6 average pool, dropout 0.5 and
FC 4096-4096-classes); only the classifier's width follows the dataset's class count. Paper recipe: torchvision's
reference script with the README's "AlexNet and VGG" command (``--lr 1e-2``; defaults SGD momentum 0.9, wd 1e-4,
StepLR 30 / 0.1, 90 epochs, 32 per GPU x 8 GPUs = batch 256). References: torchvision's IMAGENET1K_V1 metadata.

``alexnet_bn``: the full-precision AlexNet with batch normalisation that the QNN/BNN authors train
(Hubara et al., arXiv 1609.07061; itayhubara/BinaryNet.pytorch ``models/alexnet.py`` @3950a4b, class
``AlexNetOWT_BN``). Layers, in order (BN = BatchNorm with PyTorch defaults):

- conv1 11x11/4 (3->64, no bias) -> max-pool 3/2 -> BN -> ReLU
- conv2 5x5 (64->192, no bias) -> max-pool 3/2 -> ReLU -> BN
- conv3 3x3 (192->384, no bias) -> ReLU -> BN
- conv4 3x3 (384->256, no bias) -> ReLU -> BN
- conv5 3x3 (256->256, no bias) -> max-pool 3/2 -> ReLU -> BN
- fc6 9216->4096 (no bias) -> BN1d -> ReLU -> dropout 0.5
- fc7 4096->4096 (no bias) -> BN1d -> ReLU -> dropout 0.5
- fc8 4096->classes (with bias), no BN.

So every conv and every FC except the classifier is followed by BN; the BN/ReLU order is the reference's (BN before
ReLU after conv1, fc6 and fc7; after ReLU for conv2-5). Differs from the reference: an ``AdaptiveAvgPool2d((6, 6))``
is inserted before the flatten (an identity at 224x224, where conv5's pooled map is already 6x6) so that smaller
inputs work, as in torchvision. The binarised network of the same repository (``models/alexnet_binary.py``) is 3x
wider in conv1-conv4 (``ratioInfl=3``), uses Hardtanh, puts BN after the pool everywhere and adds BN after fc8; those
are the QNN compressor's business, not this full-precision baseline's.
Paper recipe of ``alexnet_bn``: the model's ``regime`` (SGD momentum 0.9, wd 5e-4, lr 1e-2, 5e-3 at epoch 10, 1e-3
and wd 0 at 15, 5e-4 at 20, 1e-4 at 25; batch 256 = ``main_binary.py`` default). The harness's schedules cannot
express that multi-step regime; the recipe approximates it with 30 epochs of StepLR(10, 0.1) (1e-2, 1e-3, 1e-4),
keeping wd 5e-4 throughout. No published ImageNet accuracy of this exact full-precision network is recorded here.

Tiny profile (both): 63x63 input, the smallest size the strides allow (torchvision's ``min_size`` for AlexNet).
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from workloads.base import Recipe, Reference, WorkloadInfo
from workloads.vgg import PAPER_RECIPE as VGG_PAPER_RECIPE
from workloads.vgg import torchvision_references
from workloads.vision import VISION_DATASETS, ImageClassificationWorkload

ALEXNET_MIN_SIZE = 63  # conv1 11x11/4 and three 3x3/2 max-pools need >= 63 pixels (torchvision meta min_size)

PAPER_RECIPE = VGG_PAPER_RECIPE  # torchvision trains AlexNet and VGG with one command (--lr 1e-2)
BN_PAPER_RECIPE = Recipe(
    epochs=30,
    batch_size=256,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="step",
    step_size=10,
    gamma=0.1,
    image_size=224,
    source="itayhubara/BinaryNet.pytorch models/alexnet.py regime (lr 1e-2/5e-3/1e-3/5e-4/1e-4 at 0/10/15/20/25, "
    "wd 5e-4 then 0 at 15) approximated by StepLR(10, 0.1) over 30 epochs; batch 256 (main_binary.py default)",
)
TINY_RECIPE = Recipe(
    epochs=3,
    batch_size=64,
    optimizer="adam",
    lr=1e-4,
    momentum=0.9,
    weight_decay=1e-4,
    schedule="cosine",
    image_size=ALEXNET_MIN_SIZE,
    max_train_samples=3000,
    max_val_samples=1000,
    source="tiny CPU profile: same architecture, 63x63 input (the smallest AlexNet accepts), <= 3000 images, "
    "3 epochs, Adam 1e-4 (SGD 0.02 without BN stayed at chance in 5 epochs)",
)
BN_TINY_RECIPE = Recipe(
    epochs=5,
    batch_size=64,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="cosine",
    image_size=ALEXNET_MIN_SIZE,
    max_train_samples=3000,
    max_val_samples=1000,
    source="tiny CPU profile: same architecture, 63x63 input (the smallest AlexNet accepts), <= 3000 images, 5 epochs",
)

BN_ARCH_SRC = "itayhubara/BinaryNet.pytorch models/alexnet.py @3950a4b (AlexNetOWT_BN)"
# alexnet_bn, 1000 classes, 224x224, counted by hand: convs 2,468,544 + BN2d 2,304 + fc 58,622,952 + BN1d 16,384
# parameters; MACs are torchvision AlexNet's (same convs and FCs): 655,566,528 conv + 58,621,952 fc.
BN_PARAMS = 61_110_184
BN_MACS = 714_188_480


class AlexNetBN(nn.Module):
    """AlexNet with BatchNorm after each conv and each hidden FC layer (BinaryNet.pytorch ``AlexNetOWT_BN``)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2, bias=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 192, kernel_size=5, padding=2, bias=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(192),
            nn.Conv2d(192, 384, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(384),
            nn.Conv2d(384, 256, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(256),
            nn.Conv2d(256, 256, kernel_size=3, padding=1, bias=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.BatchNorm2d(256),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Linear(256 * 6 * 6, 4096, bias=False),
            nn.BatchNorm1d(4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, 4096, bias=False),
            nn.BatchNorm1d(4096),
            nn.ReLU(inplace=True),
            nn.Dropout(0.5),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class AlexNetWorkload(ImageClassificationWorkload):
    """torchvision AlexNet."""

    info = WorkloadInfo(
        name="alexnet",
        paper="1404.5997",
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=VISION_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=torchvision_references("AlexNet_Weights", 56.522, 79.066, 61_100_840, 0.714),
        description="torchvision alexnet (Krizhevsky 2014, one weird trick)",
    )
    recipes = {"tiny": TINY_RECIPE, "paper": PAPER_RECIPE}

    def make_model(self, num_classes: int) -> nn.Module:
        return torchvision.models.alexnet(weights=None, num_classes=num_classes)


class AlexNetBNWorkload(ImageClassificationWorkload):
    """AlexNet with BatchNorm as trained by the QNN/BNN authors (see the module docstring for the exact layers)."""

    info = WorkloadInfo(
        name="alexnet_bn",
        paper="1609.07061",
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=VISION_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=(
            Reference("params", BN_PARAMS, BN_ARCH_SRC, "1000 classes; derived from the architecture definition"),
            Reference("gmacs", BN_MACS / 1e9, BN_ARCH_SRC, "224x224; conv + linear multiply-adds"),
        ),
        description="AlexNet-BN of BinaryNet.pytorch (full precision, BN after conv1-5, fc6, fc7)",
    )
    recipes = {"tiny": BN_TINY_RECIPE, "paper": BN_PAPER_RECIPE}

    def make_model(self, num_classes: int) -> nn.Module:
        return AlexNetBN(num_classes)
