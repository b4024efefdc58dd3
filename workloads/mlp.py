"""Two small MNIST-class networks: QNN's MNIST MLP and the LeNet-3 of Taylor pruning's criterion study.

``mlp`` (Hubara et al., QNN/BNN, arXiv 1609.07061; MatthieuCourbariaux/BinaryNet ``Train-time/mnist.py`` @387f579):
input dropout 0.2 -> 3 x [Linear(4096) -> BatchNorm(eps 1e-4, momentum 0.1 = Lasagne alpha .1) -> activation ->
dropout 0.5] -> Linear(10) -> BatchNorm(eps 1e-4), on flattened 1x28x28 images. Faithful: widths, depth, dropout
rates, BN placement (including BN after the output layer) and the squared hinge loss on +-1 one-hot targets
(``loss="squared_hinge"``, the script's loss). The activation is Hardtanh: the full-precision counterpart of the
script's ``binary_tanh_unit`` (sign of hardtanh, whose straight-through gradient is hardtanh's), so a QNN compressor
binarises exactly where the script does. Differs: inputs are normalised with the dataset's mean/std instead of
being mapped to [-1, 1]; the validation split is the official test set (the script holds out 10,000 training
images for model selection). ``hidden`` and ``num_hidden_layers`` are explicit, recorded options (default 4096 x 3
= the paper); the tiny profile keeps the paper's width (5 epochs on digits take minutes on 2 cores).
Paper recipe: Adam, lr 3e-3 decayed exponentially to 3e-7 over 1000 epochs (per epoch x (1e-4)^(1/1000), i.e.
StepLR(1, 0.990832)), batch 100, no weight decay.

``lenet3`` (Molchanov et al., Taylor pruning, arXiv 1906.10771; NVlabs/Taylor_pruning ``models/lenet.py`` @b21ed61):
conv1 5x5 (C->16) -> ReLU -> max-pool 2 -> conv2 5x5 (16->32) -> ReLU -> max-pool 2 -> fc1 (->120) -> ReLU -> fc2
(120->84) -> ReLU -> fc3 (84->classes). Two convolutions and three FC layers; the reference places its four pruning
gates after pool1, pool2, fc1+ReLU and fc2+ReLU (the compressor adds gates, the model has none). The reference has a
CIFAR-10 variant (3x32x32 input, fc1 in 32*5*5) and an MNIST variant (1x28x28, fc1 in 32*4*4); the workload picks
the variant from the dataset's channel count (grey datasets, digits included, use the MNIST variant at 28x28).
Paper recipe: the repository's ``main.py`` defaults (model lenet3: SGD lr 0.01, momentum 0.5, wd 1e-4, batch 64,
10 epochs, lr x0.1 every 100 epochs, gradient-norm clipping at 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workloads.base import Recipe, Reference, WorkloadInfo, WorkloadOptions
from workloads.vision import ImageClassificationWorkload

MNIST_LIKE = ("digits", "mnist", "fashion-mnist")
MLP_SRC = "MatthieuCourbariaux/BinaryNet Train-time/mnist.py @387f579"
LENET_SRC = "NVlabs/Taylor_pruning models/lenet.py @b21ed61"
LOSSES = ("squared_hinge", "cross_entropy")


# ---- QNN MNIST MLP --------------------------------------------------------------------------------------------------
class QnnMLP(nn.Module):
    """The BinaryNet MNIST MLP in full precision (module docstring gives the layer list)."""

    def __init__(
        self,
        num_classes: int = 10,
        in_features: int = 784,
        hidden: int = 4096,
        num_hidden_layers: int = 3,
        dropout_in: float = 0.2,
        dropout_hidden: float = 0.5,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout_in)]
        width = in_features
        for _ in range(num_hidden_layers):
            layers += [
                nn.Linear(width, hidden),
                nn.BatchNorm1d(hidden, eps=1e-4, momentum=0.1),
                nn.Hardtanh(),
                nn.Dropout(dropout_hidden),
            ]
            width = hidden
        layers += [nn.Linear(width, num_classes), nn.BatchNorm1d(num_classes, eps=1e-4, momentum=0.1)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def squared_hinge_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean((max(0, 1 - t * y))^2) with t the +-1 one-hot targets (mnist.py's ``loss``; mean over batch and classes)."""
    targets = 2.0 * F.one_hot(labels, logits.shape[1]).to(logits.dtype) - 1.0
    return torch.clamp(1.0 - targets * logits, min=0.0).pow(2).mean()


@dataclass
class MLPOptions(WorkloadOptions):
    """Explicit architecture/loss options; the defaults are the paper's (mnist.py)."""

    hidden: int = 4096
    num_hidden_layers: int = 3
    dropout_in: float = 0.2
    dropout_hidden: float = 0.5
    loss: str = "squared_hinge"

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ValueError(f"Unknown mlp loss {self.loss!r}; use one of {LOSSES}")
        if self.hidden < 1 or self.num_hidden_layers < 1:
            raise ValueError(
                f"mlp needs hidden >= 1 and num_hidden_layers >= 1, got {self.hidden}, {self.num_hidden_layers}"
            )


MLP_PAPER_RECIPE = Recipe(
    epochs=1000,
    batch_size=100,
    optimizer="adam",
    lr=3e-3,
    momentum=0.0,
    weight_decay=0.0,
    schedule="step",
    step_size=1,
    gamma=(3e-7 / 3e-3) ** (1.0 / 1000),
    image_size=28,
    source=f"{MLP_SRC}: Adam, LR 3e-3 -> 3e-7 exponential decay over 1000 epochs, batch 100",
)
MLP_TINY_RECIPE = Recipe(
    epochs=5,
    batch_size=100,
    optimizer="adam",
    lr=3e-3,
    momentum=0.0,
    weight_decay=0.0,
    schedule="cosine",
    image_size=28,
    max_train_samples=6000,
    max_val_samples=2000,
    source="tiny CPU profile: paper architecture (3x4096), 28x28 input, <= 6000 images, 5 epochs, cosine",
)


def _mlp_params(hidden: int, layers: int, classes: int = 10, inputs: int = 784) -> tuple[int, int]:
    """(parameters, MACs) of the MLP: Linear weights + biases, BN gamma + beta; MACs = weight count of the Linears."""
    widths = [inputs] + [hidden] * layers + [classes]
    macs = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
    return macs + sum(widths[1:]) + 2 * sum(widths[1:]), macs


_MLP_PARAMS, _MLP_MACS = _mlp_params(4096, 3)  # 36,843,550 parameters, 36,806,656 MACs


class MLPWorkload(ImageClassificationWorkload):
    """QNN's MNIST MLP (3 hidden layers of ``hidden`` units, default 4096)."""

    info = WorkloadInfo(
        name="mlp",
        paper="1609.07061",
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=MNIST_LIKE,
        default_dataset="digits",
        kind="mlp",
        references=(
            Reference("top1", 100.0 - 0.96, "arXiv 1609.07061 Table 1 (BNN, Theano; error 0.96 %)", "binarised MLP"),
            Reference("params", _MLP_PARAMS, MLP_SRC, "derived from the architecture: 784-4096x3-10 with BN"),
            Reference("gmacs", _MLP_MACS / 1e9, MLP_SRC, "one 28x28 image"),
        ),
        description="QNN/BNN MNIST MLP, full precision (784-4096-4096-4096-10, BN, dropout)",
    )
    Options = MLPOptions
    recipes = {"tiny": MLP_TINY_RECIPE, "paper": MLP_PAPER_RECIPE}
    model_channels = 1
    paper_image_size = 28

    def make_model(self, num_classes: int) -> nn.Module:
        o = self.options
        size = self.image_size
        return QnnMLP(num_classes, size * size, o.hidden, o.num_hidden_layers, o.dropout_in, o.dropout_hidden)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if self.options.loss == "cross_entropy":
            return super().loss(model, batch)
        images, labels = batch
        return squared_hinge_loss(model(images), labels)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        o = self.options
        width = "the paper's width" if o.hidden == 4096 else "narrower than the paper's 4096: explicit option"
        out["architecture"] = (
            f"{self.image_size**2}-{'-'.join([str(o.hidden)] * o.num_hidden_layers)}-{self.num_classes} MLP with BN, "
            f"hidden={o.hidden} ({width})"
        )
        return out


# ---- LeNet-3 ---------------------------------------------------------------------------------------------------------
class LeNet3(nn.Module):
    """LeNet-3 of NVlabs/Taylor_pruning ``models/lenet.py`` (no gate layers)."""

    def __init__(self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10) -> None:
        super().__init__()
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet-3 needs an input of at least 16x16, got {image_size}")
        self.conv1 = nn.Conv2d(in_channels, 16, 5)
        self.conv2 = nn.Conv2d(16, 32, 5)
        self.fc1 = nn.Linear(32 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(F.relu(self.conv1(x)), 2)
        out = F.max_pool2d(F.relu(self.conv2(out)), 2)
        out = F.relu(self.fc1(out.flatten(1)))
        out = F.relu(self.fc2(out))
        return self.fc3(out)


LENET_PAPER_RECIPE = Recipe(
    epochs=10,
    batch_size=64,
    optimizer="sgd",
    lr=0.01,
    momentum=0.5,
    weight_decay=1e-4,
    schedule="step",
    step_size=100,
    gamma=0.1,
    grad_clip=1.0,
    source="NVlabs/Taylor_pruning main.py defaults: SGD 0.01, momentum 0.5, wd 1e-4, batch 64, 10 epochs, clip 1.0",
)
LENET_TINY_RECIPE = Recipe(
    epochs=10,
    batch_size=64,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=1e-4,
    schedule="cosine",
    grad_clip=1.0,
    max_train_samples=6000,
    max_val_samples=2000,
    source="tiny CPU profile: same LeNet-3, dataset-native variant (28x28 grey / 32x32 colour), 10 epochs, lr 0.05",
)
# (params, MACs) counted by hand from models/lenet.py, 10 classes. CIFAR-10: params conv1 1,216 + conv2 12,832 +
# fc 96,120 + 10,164 + 850; MACs 940,800 + 1,280,000 + 106,920. MNIST: params 416 + 12,832 + 61,560 + 10,164 + 850;
# MACs 230,400 + 819,200 + 72,360.
LENET_CIFAR = (121_182, 2_327_720)
LENET_MNIST = (85_822, 1_121_960)


class LeNet3Workload(ImageClassificationWorkload):
    """LeNet-3 (Taylor pruning §5 criterion study); the input variant follows the dataset's channels."""

    info = WorkloadInfo(
        name="lenet3",
        paper="1906.10771",
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=(*MNIST_LIKE, "cifar10", "cifar100"),
        default_dataset="digits",
        kind="cnn",
        references=(
            Reference("params", LENET_CIFAR[0], LENET_SRC, "CIFAR-10 variant (3x32x32, 10 classes); derived"),
            Reference("gmacs", LENET_CIFAR[1] / 1e9, LENET_SRC, "CIFAR-10 variant, one 32x32 image"),
            Reference("params_mnist", LENET_MNIST[0], LENET_SRC, "MNIST variant (1x28x28, 10 classes); derived"),
            Reference("gmacs_mnist", LENET_MNIST[1] / 1e9, LENET_SRC, "MNIST variant, one 28x28 image"),
        ),
        description="LeNet-3 of NVlabs/Taylor_pruning (2 conv + 3 FC, 4 gated layers in the reference)",
    )
    recipes = {"tiny": LENET_TINY_RECIPE, "paper": LENET_PAPER_RECIPE}

    @property
    def model_channels(self) -> int:  # type: ignore[override]
        return self.spec.in_channels

    @property
    def paper_image_size(self) -> int:  # type: ignore[override]
        return 32 if self.spec.in_channels == 3 else 28

    @property
    def image_size(self) -> int:
        return self.recipe.image_size or self.paper_image_size

    def make_model(self, num_classes: int) -> nn.Module:
        return LeNet3(self.model_channels, self.image_size, num_classes)
