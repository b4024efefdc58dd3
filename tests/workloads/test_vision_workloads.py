"""Image workloads at the tiny profile: they build, run on real inputs, give finite losses; the smallest trains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from harness.train import Trainer
from workloads import WORKLOADS
from workloads.alexnet import ALEXNET_MIN_SIZE, AlexNetBN
from workloads.mlp import LeNet3, squared_hinge_loss

NEW_WORKLOADS = ["cifar_resnet18", "cifar_resnet34", "vgg16", "vgg16_bn", "alexnet", "alexnet_bn", "mobilenet_v2"]
NEW_WORKLOADS += ["mlp", "lenet3"]
SLOW_TO_BUILD = {"vgg16", "vgg16_bn"}  # initialising 138 M parameters takes seconds on a shared CPU


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[pytest.mark.slow] if n in SLOW_TO_BUILD else []) for n in NEW_WORKLOADS]
)
def test_builds_runs_and_has_finite_loss(name: str) -> None:
    torch.manual_seed(0)
    workload = WORKLOADS.get(name)(profile="tiny")
    assert workload.dataset == "digits" == workload.info.default_dataset
    model = workload.build_model()
    (images,) = workload.example_inputs(4)
    size = workload.image_size
    assert images.shape == (4, workload.model_channels, size, size)
    assert images.std() > 0.1  # real digits, not zeros
    assert not torch.equal(images, workload.example_inputs(4, offset=1)[0])
    model.eval()
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    model.train()
    loss = workload.loss(model, (images, torch.tensor([0, 1, 2, 3])))
    assert loss.dim() == 0 and torch.isfinite(loss) and loss > 0
    described = workload.describe()
    assert described["recipe"]["image_size"] in (None, size) and described["recipe"]["source"]


def test_every_workload_names_its_paper_and_recipe_sources() -> None:
    for name in NEW_WORKLOADS:
        cls = WORKLOADS.get(name)
        assert cls.info.paper and cls.info.references
        assert all(ref.source for ref in cls.info.references)
        assert all(recipe.source for recipe in cls.recipes.values())
        assert cls.recipes["paper"].epochs >= cls.recipes["tiny"].epochs


def test_cifar_resnet_has_cifar_stem() -> None:
    model = WORKLOADS.get("cifar_resnet18")(profile="paper", dataset="cifar10").build_model()
    conv1 = model.conv1
    assert isinstance(conv1, nn.Conv2d)
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((3, 3), (1, 1), (1, 1)) and conv1.bias is None
    assert isinstance(model.maxpool, nn.Identity)
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4)] == [2, 2, 2, 2]
    model34 = WORKLOADS.get("cifar_resnet34")(profile="paper", dataset="cifar100").build_model()
    assert [len(s) for s in (model34.layer1, model34.layer2, model34.layer3, model34.layer4)] == [3, 4, 6, 3]
    assert model34.fc.out_features == 100
    # the stem keeps 32x32: layer1 sees the full resolution
    features = model.layer1(model.relu(model.bn1(model.conv1(torch.randn(1, 3, 32, 32)))))
    assert features.shape == (1, 64, 32, 32)


def test_alexnet_bn_layers_follow_binarynet() -> None:
    model = AlexNetBN(num_classes=10)
    kinds = [type(m).__name__ for m in model.features]
    assert kinds[:4] == ["Conv2d", "MaxPool2d", "BatchNorm2d", "ReLU"]  # conv1: pool -> BN -> ReLU
    assert kinds[4:8] == ["Conv2d", "MaxPool2d", "ReLU", "BatchNorm2d"]  # conv2: pool -> ReLU -> BN
    assert kinds.count("BatchNorm2d") == 5 and kinds.count("Conv2d") == 5
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    fc_kinds = [type(m).__name__ for m in model.classifier]
    assert fc_kinds.count("BatchNorm1d") == 2 and fc_kinds[-1] == "Linear"  # no BN after the classifier
    assert model.classifier[-1].bias is not None


def test_alexnet_minimum_input_size() -> None:
    model = AlexNetBN(num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, ALEXNET_MIN_SIZE, ALEXNET_MIN_SIZE)).shape == (1, 10)
        with pytest.raises(RuntimeError):
            model(torch.randn(1, 3, ALEXNET_MIN_SIZE - 1, ALEXNET_MIN_SIZE - 1))


def test_lenet3_variant_follows_the_dataset() -> None:
    grey = WORKLOADS.get("lenet3")(profile="paper", dataset="digits")
    colour = WORKLOADS.get("lenet3")(profile="paper", dataset="cifar10")
    assert (grey.model_channels, grey.image_size, colour.model_channels, colour.image_size) == (1, 28, 3, 32)
    grey_model, colour_model = grey.build_model(), colour.build_model()
    assert isinstance(grey_model, LeNet3)
    assert grey_model.fc1.in_features == 32 * 4 * 4 and colour_model.fc1.in_features == 32 * 5 * 5
    assert grey_model.conv1.in_channels == 1 and colour_model.conv1.out_channels == 16
    assert colour_model.conv2.out_channels == 32 and colour_model.fc2.out_features == 84


def test_mlp_width_is_an_explicit_recorded_option() -> None:
    paper = WORKLOADS.get("mlp")(profile="paper")
    assert paper.options.hidden == 4096 and "the paper's width" in paper.describe()["architecture"]
    narrow = WORKLOADS.get("mlp")(profile="tiny", options={"hidden": 64})
    model = narrow.build_model()
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [64, 64, 64, 10]
    assert narrow.describe()["options"]["hidden"] == 64 and "explicit option" in narrow.describe()["architecture"]
    bn = [m for m in model.modules() if isinstance(m, nn.BatchNorm1d)]
    assert len(bn) == 4 and bn[0].eps == 1e-4  # BN after every layer, output included (mnist.py)
    with pytest.raises(ValueError, match="loss"):
        WORKLOADS.get("mlp")(options={"loss": "hinge"})


def test_squared_hinge_loss_hand_computed() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5]])
    # targets +1, -1, -1: max(0, 1 - t*y) = [0, 0, 1.5]; squared mean over the 3 classes = 2.25 / 3
    assert squared_hinge_loss(logits, torch.tensor([0])).item() == pytest.approx(0.75)
    assert squared_hinge_loss(torch.tensor([[1.0, -1.0]]), torch.tensor([0])).item() == 0.0


def test_paper_recipes_follow_their_scripts() -> None:
    mobilenet = WORKLOADS.get("mobilenet_v2").recipes["paper"]
    assert (mobilenet.lr, mobilenet.weight_decay, mobilenet.step_size, mobilenet.gamma) == (0.045, 4e-5, 1, 0.98)
    mlp = WORKLOADS.get("mlp").recipes["paper"]
    assert 3e-3 * mlp.gamma**1000 == pytest.approx(3e-7)  # mnist.py's LR_decay = (LR_fin / LR_start) ** (1 / epochs)
    cifar = WORKLOADS.get("cifar_resnet18").recipes["paper"]
    assert (cifar.lr, cifar.weight_decay, cifar.epochs, cifar.batch_size) == (0.1, 5e-4, 200, 128)


@pytest.mark.slow
def test_lenet3_trains_on_digits() -> None:
    torch.manual_seed(0)
    workload = WORKLOADS.get("lenet3")(profile="tiny", recipe_overrides={"epochs": 4})
    model = workload.build_model()
    Trainer(workload, device="cpu", progress=False).fit(model)
    metrics = workload.evaluate(model, workload.dataloader("val", shuffle=False), "cpu")
    assert metrics["samples"] == 360
    assert metrics["top1"] > 60.0  # chance is 10 %
