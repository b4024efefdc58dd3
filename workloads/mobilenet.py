"""MobileNetV2 (Sandler et al., arXiv 1801.04381) as implemented by torchvision.

Faithful: torchvision's ``mobilenet_v2`` (width 1.0) unchanged at every profile: a 3x3/2 stem, 17 inverted-residual
blocks (expansion 6 except the first, depthwise 3x3 convs, linear bottlenecks), a 1x1 conv to 1280 channels, global
average pool, dropout 0.2 and the classifier; only the classifier's width follows the dataset's class count.
MobileNetV2 is the DeepInversion verifier network (PAPERS.md §9).

Paper recipe: torchvision's reference script with the README's MobileNetV2 command (``--epochs 300 --lr 0.045
--wd 0.00004 --lr-step-size 1 --lr-gamma 0.98``; SGD momentum 0.9; 32 per GPU x 8 GPUs = batch 256): the
per-epoch decay of 0.98 is StepLR(step_size=1, gamma=0.98). Tiny profile: 32x32 input and a few epochs.
References: torchvision's ``MobileNet_V2_Weights.IMAGENET1K_V1`` metadata (the weights that recipe produced).
"""

from __future__ import annotations

import torchvision
from torch import nn

from workloads.base import Recipe, WorkloadInfo
from workloads.vgg import TORCHVISION_RECIPE_SRC, torchvision_references
from workloads.vision import VISION_DATASETS, ImageClassificationWorkload

PAPER_RECIPE = Recipe(
    epochs=300,
    batch_size=256,
    optimizer="sgd",
    lr=0.045,
    momentum=0.9,
    weight_decay=4e-5,
    schedule="step",
    step_size=1,
    gamma=0.98,
    image_size=224,
    source=f"{TORCHVISION_RECIPE_SRC} MobileNetV2 command (--epochs 300 --lr 0.045 --wd 0.00004 "
    "--lr-step-size 1 --lr-gamma 0.98)",
)
TINY_RECIPE = Recipe(
    epochs=5,
    batch_size=64,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=4e-5,
    schedule="cosine",
    image_size=32,
    max_train_samples=6000,
    max_val_samples=2000,
    source="tiny CPU profile: same architecture, 32x32 input, <= 6000 training images, 5 epochs",
)


class MobileNetV2Workload(ImageClassificationWorkload):
    """torchvision MobileNetV2 (width multiplier 1.0)."""

    info = WorkloadInfo(
        name="mobilenet_v2",
        paper="1801.04381",
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=VISION_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=torchvision_references("MobileNet_V2_Weights", 71.878, 90.286, 3_504_872, 0.301),
        description="torchvision mobilenet_v2 (Sandler et al. 2018)",
    )
    recipes = {"tiny": TINY_RECIPE, "paper": PAPER_RECIPE}

    def make_model(self, num_classes: int) -> nn.Module:
        return torchvision.models.mobilenet_v2(weights=None, num_classes=num_classes)
