"""The UNAS search spaces (Vahdat et al., CVPR'20, arXiv 1912.07651) as four image-classification workloads.

- ``darts_search``: the DARTS-space supernet (8 cells x 16 channels, 4 nodes, UNAS' 7 ops; :mod:`.darts_search`).
- ``darts_eval``: a genotype's evaluation network (20 cells x 36 channels, auxiliary head, drop-path; :mod:`.darts`).
- ``proxyless_search``: the ProxylessNAS-space supernet (21 searchable MBConv layers; :mod:`.proxyless`).
- ``proxyless_eval``: a network of 21 chosen ops in that space (default: the UNAS architecture).

The search workloads' ``build_model()`` is the supernet itself; its plain ``forward(x)`` uses a uniform architecture
distribution (DARTS space: UNAS' expectation under uniform logits; ProxylessNAS space: uniform over each layer's
choices), so the generic harness can train and measure it, while a search method (``compressors/unas.py``) drives
the same module with sampled weights (see the supernets' docstrings for the weight shapes).

Faithful: architectures at their paper sizes by default at every profile; a smaller network is only ever an explicit,
recorded option (``tiny_options`` lists the ones the tiny tests and suites pass). Profiles change data, resolution and
epochs: ``tiny`` trains on digits at 16 px (DARTS space) or 32 px (ProxylessNAS space) for a few epochs; ``paper``
carries the official recipes (CIFAR-10 at 32 px, ImageNet at 224 px). Differs: the recipes' linear warm-up, cutout,
the weights-only initial epochs of the search and the per-epoch drop-path ramp are not modelled by ``Recipe`` (named
in each recipe's source); the search workloads train the weights only - architecture updates belong to the method.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from workloads.base import Recipe, Reference, WorkloadInfo, WorkloadOptions
from workloads.cifar_resnet import CIFAR_RESNET_DATASETS
from workloads.nas.darts import GENOTYPE_SOURCES, DartsEvalNetwork, get_genotype
from workloads.nas.darts_ops import UNAS_PRIMITIVES
from workloads.nas.darts_search import DEFAULT_WEIGHTINGS, DartsSearchNetwork, num_edges
from workloads.nas.proxyless import (
    ARCHITECTURE_SOURCES,
    WIDTHS,
    ProxylessEvalNetwork,
    ProxylessSearchNetwork,
    layer_plan,
    parse_architecture,
)
from workloads.vision import VISION_DATASETS, ImageClassificationWorkload

UNAS_PAPER = "1912.07651"
_UNAS = "NVlabs/unas @cdd19b9"
_DARTS_README = "quark0/darts README.md @f276dd3"


def _tiny(source: str, image_size: int, optimizer: str = "sgd", lr: float = 0.05, wd: float = 3e-4) -> Recipe:
    return Recipe(
        epochs=3,
        batch_size=64,
        optimizer=optimizer,
        lr=lr,
        momentum=0.9,
        weight_decay=wd,
        schedule="cosine",
        grad_clip=5.0,
        image_size=image_size,
        max_train_samples=6000,
        max_val_samples=2000,
        source=f"tiny CPU profile: {source}, {image_size}x{image_size} input, <= 6000 training images, 3 epochs",
    )


def _size_note(values: dict[str, Any], paper: dict[str, Any]) -> str:
    changed = [f"{k}={values[k]} (paper {v})" for k, v in paper.items() if values[k] != v]
    return "paper size" if not changed else "smaller than the paper's: explicit option(s) " + ", ".join(changed)


class _NasWorkload(ImageClassificationWorkload):
    """Shared: the paper sizes of the options and the recorded architecture note."""

    paper_sizes: ClassVar[dict[str, Any]]
    tiny_options: ClassVar[dict[str, Any]]

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["architecture"] = f"{self.info.description}; {_size_note(self.options.to_dict(), self.paper_sizes)}"
        return out


# ---- DARTS space -----------------------------------------------------------------------------------------------------
@dataclass
class DartsSearchOptions(WorkloadOptions):
    """Supernet options; defaults are UNAS' CIFAR search (``darts/train_search.py`` L46, L101-106)."""

    layers: int = 8
    init_channels: int = 16
    nodes: int = 4
    num_ops: int = 7  # the first ``num_ops`` of UNAS_PRIMITIVES (5 for the ImageNet search)
    default_weighting: str = "paired"
    prune_below: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.num_ops <= len(UNAS_PRIMITIVES):
            raise ValueError(f"darts_search num_ops={self.num_ops} must be in 1..{len(UNAS_PRIMITIVES)}")
        if self.default_weighting not in DEFAULT_WEIGHTINGS:
            raise ValueError(f"darts_search default_weighting must be one of {DEFAULT_WEIGHTINGS}")
        if min(self.layers, self.init_channels, self.nodes) < 1:
            raise ValueError("darts_search needs layers, init_channels and nodes >= 1")


class DartsSearchWorkload(_NasWorkload):
    """UNAS' DARTS-space supernet; ``forward(x)`` uses the default (uniform) architecture distribution."""

    info = WorkloadInfo(
        name="darts_search",
        paper=UNAS_PAPER,
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=CIFAR_RESNET_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=(
            Reference("params", 2_479_866, f"{_UNAS} darts/model_search.py", "8 cells x 16 ch, 7 ops, 10 classes"),
            Reference("gmacs", 0.4008, f"{_UNAS} darts/model_search.py", "32x32, every op of every edge computed"),
        ),
        description="DARTS-space search supernet (UNAS ops, paired-input weights)",
    )
    Options = DartsSearchOptions

    @property
    def opts(self) -> DartsSearchOptions:
        assert isinstance(self.options, DartsSearchOptions)
        return self.options

    paper_sizes: ClassVar[dict[str, Any]] = {"layers": 8, "init_channels": 16, "nodes": 4, "num_ops": 7}
    tiny_options: ClassVar[dict[str, Any]] = {"layers": 5, "init_channels": 8}
    recipes = {
        "tiny": _tiny("Adam, supernet weights only", 16, optimizer="adam", lr=1e-3),
        "paper": Recipe(
            epochs=85,
            batch_size=32,
            optimizer="adam",
            lr=3e-4,
            weight_decay=3e-4,
            schedule="cosine",
            grad_clip=5.0,
            image_size=32,
            source=f"{_UNAS} darts/train_search.py defaults: weights Adam 3e-4, wd 3e-4, cosine to 1e-4 over 85 epochs "
            "after 15 weights-only init epochs, batch 32 per GPU, grad clip 5; commands.sh adds --scale_lr on 4 GPUs",
        ),
    }
    paper_image_size = 32

    def make_model(self, num_classes: int) -> nn.Module:
        o = self.opts
        return DartsSearchNetwork(
            num_classes,
            o.init_channels,
            o.layers,
            o.nodes,
            UNAS_PRIMITIVES[: o.num_ops],
            default_weighting=o.default_weighting,
            prune_below=o.prune_below,
        )

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        o = self.opts
        edges = num_edges(o.nodes)
        out["search_space"] = {
            "primitives": list(UNAS_PRIMITIVES[: o.num_ops]),
            "weights_normal_shape": [edges, o.num_ops],
            "weights_reduce_shape": [edges, o.num_ops],
            "default_weighting": o.default_weighting,
        }
        return out


@dataclass
class DartsEvalOptions(WorkloadOptions):
    """Evaluation-network options; defaults are the CIFAR paper network (``train_eval_cifar.py`` L41-71)."""

    genotype: str = "DARTS_V2"
    layers: int = 20
    init_channels: int = 36
    auxiliary: bool = True
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2

    def __post_init__(self) -> None:
        get_genotype(self.genotype)
        if not 0.0 <= self.drop_path_prob < 1.0:
            raise ValueError(f"darts_eval drop_path_prob={self.drop_path_prob} must be in [0, 1)")
        if min(self.layers, self.init_channels) < 1:
            raise ValueError("darts_eval needs layers and init_channels >= 1")


class DartsEvalWorkload(_NasWorkload):
    """A DARTS-space genotype trained from scratch; training loss adds ``auxiliary_weight`` x the auxiliary CE."""

    info = WorkloadInfo(
        name="darts_eval",
        paper=UNAS_PAPER,
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=CIFAR_RESNET_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=(
            Reference("params", 3_349_342, GENOTYPE_SOURCES["DARTS_V2"], "derived: 20 x 36, 10 classes, no aux head"),
            Reference("params", 3.3e6, f"{_DARTS_README} ('2.63% test error rate with 3.3M model params')", "DARTS_V2"),
            Reference("top1", 100 - 2.76, f"{_DARTS_README} ('2.76 +/- 0.09%' over 10 runs)", "DARTS_V2, CIFAR-10"),
            Reference("gmacs", 0.5284, GENOTYPE_SOURCES["DARTS_V2"], "derived: one 32x32 image, conv + linear"),
            Reference("params", 3_330_766, GENOTYPE_SOURCES["UNAS_CIFAR10"], "derived: UNAS_CIFAR10, 20 x 36"),
        ),
        description="DARTS-space evaluation network from a genotype (stem 3C, auxiliary head, drop-path)",
    )
    Options = DartsEvalOptions

    @property
    def opts(self) -> DartsEvalOptions:
        assert isinstance(self.options, DartsEvalOptions)
        return self.options

    paper_sizes: ClassVar[dict[str, Any]] = {"layers": 20, "init_channels": 36}
    tiny_options: ClassVar[dict[str, Any]] = {"layers": 5, "init_channels": 8, "auxiliary": False}
    recipes = {
        "tiny": _tiny("SGD, the genotype's network", 16),
        "paper": Recipe(
            epochs=600,
            batch_size=128,
            optimizer="sgd",
            lr=0.05,
            momentum=0.9,
            weight_decay=3e-4,
            schedule="cosine",
            grad_clip=5.0,
            image_size=32,
            source=f"{_UNAS} commands.sh CIFAR-10 eval (--batch_size 128 --warmup_epochs 30 --learning_rate 0.05 "
            "--drop_path_prob 0.2) over train_eval_cifar.py defaults (600 epochs, SGD 0.9, wd 3e-4, grad clip 5, "
            "cosine after the linear warm-up, cutout 16, auxiliary 0.4); warm-up and cutout not modelled",
        ),
    }
    paper_image_size = 32

    def make_model(self, num_classes: int) -> nn.Module:
        o = self.opts
        genotype = get_genotype(o.genotype)
        return DartsEvalNetwork(genotype, num_classes, o.init_channels, o.layers, o.auxiliary, o.drop_path_prob)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        if not (self.opts.auxiliary and model.training and isinstance(model, DartsEvalNetwork)):
            return super().loss(model, batch)
        images, labels = batch
        logits, aux = model(images, return_aux=True)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.recipe.label_smoothing)
        if aux is not None:  # train_eval_cifar.py: loss += auxiliary_weight * criterion(logits_aux, target)
            loss = loss + self.opts.auxiliary_weight * F.cross_entropy(aux, labels)
        return loss

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["genotype_source"] = GENOTYPE_SOURCES[self.opts.genotype]
        return out


# ---- ProxylessNAS space ----------------------------------------------------------------------------------------------
@dataclass
class ProxylessSearchOptions(WorkloadOptions):
    """Supernet options; defaults are UNAS' (``proxylessnas/model_search.py``)."""

    widths: str = "unas"
    width_multiplier: float = 1.0
    zero_dropout: float = 0.1
    prune_below: float = 0.0

    def __post_init__(self) -> None:
        if self.widths not in WIDTHS:
            raise ValueError(f"Unknown widths preset {self.widths!r}; use one of {', '.join(WIDTHS)}")
        if self.width_multiplier <= 0:
            raise ValueError(f"width_multiplier={self.width_multiplier} must be > 0")


@dataclass
class ProxylessEvalOptions(WorkloadOptions):
    """``architecture``: a registered name (UNAS, PROXYLESS_GPU) or a comma list of 21 op names."""

    architecture: str = "UNAS"
    widths: str = "unas"
    width_multiplier: float = 1.0

    def __post_init__(self) -> None:
        if self.widths not in WIDTHS:
            raise ValueError(f"Unknown widths preset {self.widths!r}; use one of {', '.join(WIDTHS)}")
        if self.width_multiplier <= 0:
            raise ValueError(f"width_multiplier={self.width_multiplier} must be > 0")
        parse_architecture(self.architecture, WIDTHS[self.widths])


_PROXYLESS_GPU_LOG = "mit-han-lab/proxylessnas logs/imagenet_gpu_log.txt @bf58b5c"
_PROXYLESS_SRC = f"{_UNAS} proxylessnas/model.py"


class _ProxylessWorkload(_NasWorkload):
    paper_sizes: ClassVar[dict[str, Any]] = {"widths": "unas", "width_multiplier": 1.0}
    tiny_options: ClassVar[dict[str, Any]] = {"width_multiplier": 0.25}
    paper_image_size = 224


class ProxylessSearchWorkload(_ProxylessWorkload):
    """UNAS' ProxylessNAS-space supernet; ``forward(x)`` uses uniform weights over each layer's choices."""

    info = WorkloadInfo(
        name="proxyless_search",
        paper=UNAS_PAPER,
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=VISION_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=(Reference("params", 27_684_320, f"{_UNAS} proxylessnas/model_search.py", "derived, 1000 classes"),),
        description="ProxylessNAS-space search supernet (21 layers x MBConv {3,5,7} x {3,6} / zero)",
    )
    Options = ProxylessSearchOptions

    @property
    def opts(self) -> ProxylessSearchOptions:
        assert isinstance(self.options, ProxylessSearchOptions)
        return self.options

    recipes = {
        "tiny": _tiny("Adam, supernet weights only", 32, optimizer="adam", lr=1e-3),
        "paper": Recipe(
            epochs=15,
            batch_size=24,
            optimizer="adam",
            lr=3e-4,
            weight_decay=3e-4,
            schedule="cosine",
            grad_clip=5.0,
            image_size=224,
            source=f"{_UNAS} commands.sh ProxylessNAS search (--learning_rate 3e-4 --init_epoch 20 --epochs 15 "
            "--batch_size 24, 8 GPUs) over proxylessnas/train_search.py (Adam, wd 3e-4, cosine to 1e-4, grad clip 5)",
        ),
    }

    def make_model(self, num_classes: int) -> nn.Module:
        o = self.opts
        return ProxylessSearchNetwork(num_classes, o.widths, o.width_multiplier, 3, o.zero_dropout, o.prune_below)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["search_space"] = {"choices_per_layer": [list(c) for _, _, _, c in layer_plan(WIDTHS[self.opts.widths])]}
        return out


class ProxylessEvalWorkload(_ProxylessWorkload):
    """A network of 21 chosen ops in the ProxylessNAS space (default: the UNAS-found architecture)."""

    info = WorkloadInfo(
        name="proxyless_eval",
        paper=UNAS_PAPER,
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=VISION_DATASETS,
        default_dataset="digits",
        kind="cnn",
        references=(
            Reference("params", 5_965_528, _PROXYLESS_SRC, "derived: architecture UNAS, 1000 classes"),
            Reference("gmacs", 0.4280, _PROXYLESS_SRC, "derived: architecture UNAS, 224x224, conv + linear"),
            Reference("params", 7.12e6, f"{_PROXYLESS_GPU_LOG} ('Total training params: 7.12M')", "PROXYLESS_GPU"),
            Reference("gmacs", 0.4653, f"{_PROXYLESS_GPU_LOG} ('Total FLOPs: 465.3M')", "PROXYLESS_GPU"),
            Reference("top1", 75.084, f"{_PROXYLESS_GPU_LOG} ('test_acc1: 75.084000')", "PROXYLESS_GPU, ImageNet"),
        ),
        description="ProxylessNAS-space network from a list of 21 ops",
    )
    Options = ProxylessEvalOptions

    @property
    def opts(self) -> ProxylessEvalOptions:
        assert isinstance(self.options, ProxylessEvalOptions)
        return self.options

    paper_sizes: ClassVar[dict[str, Any]] = {"widths": "unas", "width_multiplier": 1.0}
    recipes = {
        "tiny": _tiny("SGD, the chosen network", 32, wd=5e-5),
        "paper": Recipe(
            epochs=300,
            batch_size=512,
            optimizer="sgd",
            lr=0.2,
            momentum=0.9,
            weight_decay=5e-5,
            schedule="cosine",
            grad_clip=5.0,
            label_smoothing=0.1,
            image_size=224,
            source=f"{_UNAS} proxylessnas/train_eval.py defaults: 64 per GPU x 8 GPUs, lr 0.025 x 512/64 (L130-132), "
            "SGD 0.9, wd 5e-5, 300 epochs cosine after 5 linear warm-up epochs (not modelled), label smoothing 0.1, "
            "grad clip 5",
        ),
    }

    def make_model(self, num_classes: int) -> nn.Module:
        o = self.opts
        return ProxylessEvalNetwork(o.architecture, num_classes, o.widths, o.width_multiplier)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        arch = self.opts.architecture
        out["architecture_ops"] = list(parse_architecture(arch, WIDTHS[self.opts.widths]))
        out["architecture_source"] = ARCHITECTURE_SOURCES.get(arch, "explicit op list (option architecture)")
        return out
