"""Every registered image workload, built at the paper profile, has the published parameter count and MACs.

No training and no data: the model is built for the paper's dataset (class count) and counted on ``paper_inputs()``
(tensors at the paper's resolution) with the harness's FlopCounterMode counter. Models and inputs live on the
``meta`` device: shapes and dispatched ops are those of a real forward pass, without allocating or computing, so
even VGG-16 at 224x224 takes well under a second. torchvision's "GFLOPS" field (``_ops``) counts multiply-adds, so it
is compared with MACs.
"""

from __future__ import annotations

import pytest
import torch
import torchvision

from harness.meters.flops import count_flops
from workloads import WORKLOADS
from workloads.base import Workload

# The dataset whose class count and resolution the published figures refer to, for workloads without ImageNet.
PAPER_DATASETS = {"cifar_resnet18": "cifar10", "cifar_resnet34": "cifar10", "mlp": "mnist", "lenet3": "cifar10"}
# Extra (dataset, params key, MACs key) checks of a second published variant.
EXTRA_VARIANTS = {"lenet3": [("mnist", "params_mnist", "gmacs_mnist")]}


# search spaces and their evaluation networks: published figures checked in tests/workloads/test_nas_spaces.py
# (the evaluation count excludes the auxiliary head; a supernet has no single published figure)
NAS_SPACES = {"darts_search", "darts_eval", "proxyless_search", "proxyless_eval"}


def image_workloads() -> list[str]:
    return [
        name
        for name in WORKLOADS.names()
        if WORKLOADS.get(name).info.task == "image-classification" and name not in NAS_SPACES
    ]


def _paper_dataset(cls: type[Workload]) -> str:
    if cls.info.name in PAPER_DATASETS:
        return PAPER_DATASETS[cls.info.name]
    return "imagenet" if "imagenet" in cls.info.datasets else cls.info.default_dataset


def _cases() -> list:
    cases = []
    for name in image_workloads():
        cls = WORKLOADS.get(name)
        checks = [(_paper_dataset(cls), "params", "gmacs"), *EXTRA_VARIANTS.get(name, [])]
        for dataset, params_key, macs_key in checks:
            cases.append(pytest.param(name, dataset, params_key, macs_key, id=f"{name}-{dataset}"))
    return cases


def _reference(cls: type[Workload], metric: str) -> float:
    values = [r.value for r in cls.info.references if r.metric == metric]
    assert values, f"{cls.info.name} has no {metric!r} reference: every image workload must publish params and MACs"
    return values[0]


@pytest.mark.parametrize("name, dataset, params_key, macs_key", _cases())
def test_params_and_macs_match_published_figures(name: str, dataset: str, params_key: str, macs_key: str) -> None:
    cls = WORKLOADS.get(name)
    workload = cls(profile="paper", dataset=dataset)
    with torch.device("meta"):
        model = workload.build_model()
    params = sum(p.numel() for p in model.parameters())
    assert params == pytest.approx(_reference(cls, params_key), rel=0.01)
    inputs = tuple(x.to("meta") for x in workload.paper_inputs(1))
    flops = count_flops(model, inputs)
    assert not flops["heavy_unsupported_ops"]
    assert flops["macs"] / 1e9 == pytest.approx(_reference(cls, macs_key), rel=0.01)


def test_every_image_workload_is_checked() -> None:
    names = image_workloads()
    expected = {"resnet18", "resnet34", "resnet50", "resnet101", "cifar_resnet18", "cifar_resnet34", "vgg16"}
    expected |= {"vgg16_bn", "alexnet", "alexnet_bn", "mobilenet_v2", "mlp", "lenet3"}
    assert expected <= set(names)


@pytest.mark.parametrize("name", ["vgg16", "vgg16_bn", "alexnet", "mobilenet_v2", "resnet18", "resnet50"])
def test_hard_coded_torchvision_references_match_installed_metadata(name: str) -> None:
    cls = WORKLOADS.get(name)
    refs = {r.metric: r for r in cls.info.references}
    source = refs["top1"].source  # e.g. torchvision.models.VGG16_Weights.IMAGENET1K_V1.meta
    enum_name, member = source.split(".")[2:4]
    meta = getattr(getattr(torchvision.models, enum_name), member).meta
    assert refs["top1"].value == meta["_metrics"]["ImageNet-1K"]["acc@1"]
    assert refs["top5"].value == meta["_metrics"]["ImageNet-1K"]["acc@5"]
    assert refs["params"].value == meta["num_params"]
    assert refs["gmacs"].value == meta["_ops"]
