"""DeepInversion priors against hand computations, the synthesis loop's guarantees, and the data-free data source."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from compressors.base import IncompatibleWorkloadError
from compressors.deepinversion.compressor import DeepInversionConfig, noise_images, require_batchnorm
from compressors.deepinversion.data_source import Augment, SyntheticTrainData, kd_loss
from compressors.deepinversion.priors import (
    BatchNormStatistics,
    competition,
    image_l2,
    js_divergence,
    total_variation,
)
from compressors.deepinversion.synthesis import SETTINGS, Synthesizer, balanced_targets, cosine_lr, pixel_range


class TinyBN(nn.Module):
    """conv -> BN -> ReLU -> pool -> linear: the smallest net with a BN prior."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def _tiny_teacher(stats_from_data: bool = False) -> TinyBN:
    torch.manual_seed(0)
    net = TinyBN()
    with torch.no_grad():
        if stats_from_data:  # statistics of real-looking data: smooth images inside the pixel range
            data = torch.rand(64, 1, 2, 2, generator=torch.Generator().manual_seed(9)) * 4 - 2
            feats = net.conv(torch.nn.functional.interpolate(data, size=6, mode="bilinear"))
            net.bn.running_mean.copy_(feats.mean(dim=(0, 2, 3)))
            net.bn.running_var.copy_(feats.var(dim=(0, 2, 3), unbiased=False))
        else:
            net.bn.running_mean.copy_(torch.tensor([0.5, -1.0]))
            net.bn.running_var.copy_(torch.tensor([2.0, 0.25]))
    return net.eval()


def test_r_feature_equals_hand_computed_norms_of_the_bn_input() -> None:
    net = _tiny_teacher()
    x = torch.randn(4, 1, 5, 5, generator=torch.Generator().manual_seed(1))
    with BatchNormStatistics(net, first_bn_multiplier=10.0) as bn:
        net(x)
        value, weighted = bn.unscaled(), bn.loss()
    feats = net.conv(x)  # the BN layer's input
    feats = feats.detach()
    mean = [float(feats[:, c].mean()) for c in range(2)]
    var = [float(((feats[:, c] - mean[c]) ** 2).mean()) for c in range(2)]  # biased
    expected = math.sqrt((mean[0] - 0.5) ** 2 + (mean[1] + 1.0) ** 2) + math.sqrt(
        (var[0] - 2.0) ** 2 + (var[1] - 0.25) ** 2
    )
    assert float(value) == pytest.approx(expected, rel=1e-5)
    assert float(weighted) == pytest.approx(10.0 * expected, rel=1e-5)  # one layer: it is the first


def test_r_feature_covers_batchnorm1d_and_refuses_nets_without_bn() -> None:
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).eval()
    x = torch.tensor([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])
    with BatchNormStatistics(net) as bn:
        net(x)
        feats = net[0](x)
        expected = torch.norm(feats.mean(0)) + torch.norm(feats.var(0, unbiased=False) - 1.0)
        assert float(bn.loss()) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ValueError, match="no BatchNorm"):
        BatchNormStatistics(nn.Linear(2, 2))
    with pytest.raises(IncompatibleWorkloadError, match="R_feature"):
        require_batchnorm(nn.Sequential(nn.Conv2d(1, 1, 1)), "lenet3")


def test_total_variation_four_directions_by_hand() -> None:
    x = torch.tensor([[[[0.0, 1.0], [3.0, 7.0]]]])
    # horizontal: -1, -4; vertical: -3, -6; anti-diagonal x[1,0]-x[0,1] = 2; diagonal x[0,0]-x[1,1] = -7
    l1, l2 = total_variation(x)
    assert float(l1) == pytest.approx((1 + 4) / 2 + (3 + 6) / 2 + 2 + 7)
    assert float(l2) == pytest.approx(math.sqrt(17) + math.sqrt(45) + 2 + 7)
    assert float(image_l2(torch.tensor([[[[3.0, 4.0]]], [[[0.0, 0.0]]]]))) == pytest.approx(2.5)


def test_js_competition_matches_a_hand_computed_case() -> None:
    student, teacher = torch.tensor([[0.0, 3.0 * math.log(3.0)]]), torch.tensor([[0.0, 0.0]])
    p, q = [0.25, 0.75], [0.5, 0.5]  # softmax at T=3
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]
    kl = lambda a, b: sum(x * math.log(x / y) for x, y in zip(a, b, strict=True))  # noqa: E731
    expected = 0.5 * kl(m, p) + 0.5 * kl(m, q)  # the official argument order KL(M||P)
    assert float(js_divergence(student, teacher)) == pytest.approx(expected, rel=1e-5)
    assert float(competition(student, teacher)) == pytest.approx(1 - expected, rel=1e-6)
    assert float(competition(teacher, teacher)) == pytest.approx(1.0)  # agreement is the worst case for ADI


def test_cosine_lr_warms_up_then_decays_to_zero() -> None:
    assert cosine_lr(0.2, 100, 1000, 0) == pytest.approx(0.002)
    assert cosine_lr(0.2, 100, 1000, 99) == pytest.approx(0.2)
    assert cosine_lr(0.2, 100, 1000, 100) == pytest.approx(0.2)
    assert cosine_lr(0.2, 100, 1000, 1000) == pytest.approx(0.0, abs=1e-12)


def _synthesizer(
    setting: str = "cifar", iterations: int = 30, data_stats: bool = False, **changes: object
) -> Synthesizer:
    import dataclasses

    settings = dataclasses.replace(SETTINGS[setting].with_iterations(iterations), batch_size=6, **changes)
    low, high = pixel_range((0.5,), (0.25,), 1)
    return Synthesizer(_tiny_teacher(data_stats), settings, low, high, log_every=10)


def test_synthesis_is_deterministic_for_a_seed_and_stays_in_the_pixel_range() -> None:
    targets = balanced_targets(6, 3)
    a = _synthesizer(lr=0.5).run((6, 1, 6, 6), targets, seed=3)
    b = _synthesizer(lr=0.5).run((6, 1, 6, 6), targets, seed=3)
    c = _synthesizer(lr=0.5).run((6, 1, 6, 6), targets, seed=4)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.images.min() >= -2.0 - 1e-6 and a.images.max() <= 2.0 + 1e-6  # (0-0.5)/0.25, (1-0.5)/0.25
    assert a.final["total"] <= a.initial["total"]
    assert [h["iteration"] for h in a.history] == [10.0, 20.0, 30.0]


def test_jitter_and_flip_are_applied_to_the_optimised_batch_consistently() -> None:
    synth = _synthesizer("imagenet1", iterations=1, jitter=2, flip=True, cosine_lr=False)
    seen: list[torch.Tensor] = []
    original = synth.terms

    def spy(x, targets, bn, student):  # noqa: ANN001, ANN202
        seen.append(x.detach().clone())
        return original(x, targets, bn, student)

    synth.terms = spy  # type: ignore[method-assign]
    start = torch.arange(36.0).view(1, 1, 6, 6).repeat(6, 1, 1, 1) / 36
    synth.run((6, 1, 6, 6), balanced_targets(6, 3), seed=0, start=start)
    view = seen[1]  # [0] is the no-jitter initial evaluation
    import random

    draws = random.Random(0)
    shift = (draws.randint(-2, 2), draws.randint(-2, 2))
    expected = torch.roll(start, shifts=shift, dims=(2, 3))
    if draws.random() > 0.5:
        expected = torch.flip(expected, dims=(3,))
    assert torch.equal(view, expected)  # one shift and flip for the whole batch, drawn from the seeded generator


def test_multi_resolution_stage_runs_on_the_pooled_view() -> None:
    synth = _synthesizer("imagenet0", iterations=4)
    shapes: list[tuple[int, ...]] = []
    original = synth.terms
    synth.terms = lambda x, *a: (shapes.append(tuple(x.shape)), original(x, *a))[1]  # type: ignore[method-assign]
    synth.run((6, 1, 8, 8), balanced_targets(6, 3), seed=0)
    assert shapes[1:] == [(6, 1, 4, 4)] * 3 + [(6, 1, 8, 8)] * 1 + [(6, 1, 8, 8)]  # 2:1 stages, then the final check


def test_synthesis_lowers_r_feature_towards_the_stored_statistics() -> None:
    # an untrained head cannot be driven to every target; trained teachers are checked in the benchmark
    synth = _synthesizer(iterations=300, data_stats=True, lr=0.1, r_feature=10.0)
    result = synth.run((6, 1, 6, 6), balanced_targets(6, 3), seed=0)
    assert result.final["r_feature"] < result.initial["r_feature"] / 10
    assert result.final["total"] < result.initial["total"]


def test_synthetic_train_data_replaces_only_the_training_split() -> None:
    from workloads.mlp import MLPWorkload

    workload = MLPWorkload(options={"hidden": 16, "num_hidden_layers": 1}, recipe_overrides={"max_val_samples": 20})
    images = noise_images(workload, 10, seed=0)
    data = SyntheticTrainData(workload, images, balanced_targets(10, 10))
    batch = next(iter(data.dataloader("train", batch_size=10)))
    assert sorted(batch[1].tolist()) == list(range(10)) and batch[0].shape == images.shape
    assert len(data.dataloader("val").dataset) == 20  # real validation data
    assert data.describe()["train_data"]["images"] == 10 and data.info.name == "mlp"
    low, high = pixel_range(workload.spec.mean, workload.spec.std, images.shape[1])
    assert images.min() >= low.min() and images.max() <= high.max()


def test_kd_loss_is_zero_for_equal_logits_and_augment_is_seeded() -> None:
    logits = torch.randn(4, 5)
    assert float(kd_loss(logits, logits, 3.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(logits, torch.zeros(4, 5), 3.0)) > 0
    x = torch.randn(2, 1, 4, 4)
    assert torch.equal(Augment(1, True, 5)(x), Augment(1, True, 5)(x))


def test_config_refuses_bad_values_and_resolves_profile_defaults() -> None:
    with pytest.raises(ValueError, match="method"):
        DeepInversionConfig(method="gan")
    with pytest.raises(ValueError, match="setting"):
        DeepInversionConfig(setting="imagenet9")
    settings, batches = DeepInversionConfig().resolved_settings("paper", 32)
    assert settings == SETTINGS["cifar"] and batches == 196
    settings, batches = DeepInversionConfig().resolved_settings("paper", 224)
    assert settings.name == "imagenet0" and settings.stages == ((2, 2000), (1, 1000))
    settings, batches = DeepInversionConfig().resolved_settings("tiny", 16)
    assert settings.iterations == 400 and settings.batch_size == 64 and batches == 4
    assert (settings.lr, settings.r_feature, settings.cosine_lr, settings.warmup) == (0.1, 0.1, True, 20)
    assert (settings.jitter, settings.resolution) == (1, 16)  # 2 px at 32 px, scaled with the image
    assert DeepInversionConfig().resolved_settings("tiny", 8)[0].jitter == 0
    assert DeepInversionConfig(jitter=3).resolved_settings("tiny", 8)[0].jitter == 3
    assert DeepInversionConfig().resolved_settings("paper", 112)[0].jitter == 15  # imagenet0 at half size


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"workload": "lenet3", "compressor": "taylor", "train_data": "deepinversion"}, "no BatchNorm"),
        ({"workload": "mlp", "compressor": "none", "train_data": "noise"}, "uses none"),
        ({"workload": "mlp", "compressor": "deepinversion", "train_data": "deepinversion"}, "makes its own"),
        ({"workload": "cifar_resnet18", "compressor": "taylor", "train_data": "deepinversion",
          "synthesis_args": {"foo": "1"}}, "synthesis.iterations"),
        ({"workload": "cifar_resnet18", "compressor": "taylor", "synthesis_args": {"iterations": "3"}}, "only apply"),
        ({"workload": "lenet3", "compressor": "deepinversion"}, "R_feature"),
        ({"workload": "mlp", "compressor": "deepinversion", "compressor_args": {"teacher": "lenet3"}}, "lenet3"),
        ({"workload": "mlp", "compressor": "deepinversion", "compressor_args": {"teacher": "bert"}}, "cannot teach"),
    ],
)  # fmt: skip
def test_data_free_settings_are_refused_before_any_work(settings: dict, message: str) -> None:
    from harness.config import RunConfig
    from harness.runner import prepare

    with pytest.raises(ValueError, match=message):
        prepare(RunConfig(**settings))


def test_synthesis_keys_route_from_set_and_unknown_training_data_is_refused() -> None:
    from harness.config import RunConfig, route_overrides

    routed = route_overrides({"synthesis.iterations": "5", "recipe.lr": "0.1"}, set())
    assert routed["synthesis_args"] == {"iterations": "5"} and routed["recipe_overrides"] == {"lr": "0.1"}
    with pytest.raises(ValueError, match="training data"):
        RunConfig(workload="mlp", train_data="imagenet")
