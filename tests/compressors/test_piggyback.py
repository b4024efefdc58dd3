"""Piggyback (arXiv 1801.06519): the official thresholding and tie rules, the straight-through gradient against a
hand computation, bit packing, a frozen backbone (bit-identical), every mask bit 1 at step 0, 1-bit packed masks that
reload to identical logits, the packed inference path equal to the materialised one, and zero forgetting."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from compressors.continual import piggyback
from compressors.continual.heads import MultiTaskNet
from compressors.continual.masks import Binarizer, Ternarizer, pack_bits, unpack_bits
from compressors.continual.piggyback import MaskGradientScale, PiggybackConfig, PiggybackModel
from harness.config import RunConfig
from harness.context import RunContext
from harness.runner import prepare, seed_everything

SMALL = {"epochs": "1", "max_train_samples": "96", "max_val_samples": "48", "batch_size": "32"}
FAST = {"epochs": "1", "controls": "", "latency": "false"}
THREE = "digits[0-4],digits[5-9],fashion-mnist[0-4]"


def _run(tmp_path: Path, tasks: str, workload: str = "lenet3", options: dict | None = None, **args: str) -> Any:
    config = RunConfig(
        workload=workload, compressor="piggyback", tasks=tasks.split(","), compressor_args={**FAST, **args},
        recipe_overrides=SMALL, workload_options=options or {},
    )  # fmt: skip
    prepared = prepare(config)
    seed_everything(0)
    model = prepared.workload.build_model()
    reference = copy.deepcopy(model)
    ctx = RunContext(prepared.workload, prepared.config, tmp_path, tasks=prepared.tasks)
    return prepared.compressor.apply(model, ctx), prepared, reference


def _logits(model: Any, task: Any) -> torch.Tensor:
    inputs = task.workload.example_inputs(16, offset=3)
    with model.serving(task.index), torch.no_grad():
        return model(*inputs)


# ---- thresholding, STE and packing -----------------------------------------------------------------------------------
def test_binarizer_keeps_strictly_above_the_threshold() -> None:
    real = torch.tensor([0.004, 0.005, 0.0050001, 0.01, -1.0])
    assert Binarizer.apply(real, 5e-3).tolist() == [0.0, 0.0, 1.0, 1.0, 0.0]  # official: le(τ) -> 0, gt(τ) -> 1


def test_ternarizer_minus_one_below_zero_not_below_minus_tau() -> None:
    real = torch.tensor([-0.001, 0.0, 0.003, 0.005, 0.006])
    assert Ternarizer.apply(real, 5e-3).tolist() == [-1.0, 0.0, 0.0, 0.0, 1.0]


def test_straight_through_gradient_is_upstream_gradient_times_weight() -> None:
    # y = (m ⊙ W) x with L = sum(c * y): dL/dm_r = dL/dm = (c x^T) ⊙ W (eq. 3-4), whatever the threshold did
    weight = torch.tensor([[2.0, -3.0], [0.5, 4.0]])
    real = torch.tensor([[0.01, 0.001], [0.02, -0.5]], requires_grad=True)
    x, c = torch.tensor([1.5, -2.0]), torch.tensor([3.0, -1.0])
    (c * ((Binarizer.apply(real, 5e-3) * weight) @ x)).sum().backward()
    assert real.grad is not None
    assert torch.allclose(real.grad, torch.outer(c, x) * weight)  # [[9, 18], [-0.75, 8]]


def test_pack_bits_order_count_and_roundtrip() -> None:
    mask = torch.tensor([1, 0, 0, 0, 0, 0, 0, 0, 1, 1], dtype=torch.bool)
    assert pack_bits(mask).tolist() == [1, 3]  # value i is bit i % 8 of byte i // 8
    shape = (3, 5, 7)
    random = torch.rand(shape, generator=torch.Generator().manual_seed(0)) > 0.5
    packed = pack_bits(random)
    assert packed.dtype == torch.uint8 and packed.numel() == (105 + 7) // 8
    assert torch.equal(unpack_bits(packed, shape), random)


def _small_model(threshold: float = 5e-3, ternary: bool = False) -> PiggybackModel:
    torch.manual_seed(0)
    shared = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 6), nn.ReLU())
    net = MultiTaskNet(shared, [nn.Linear(6, 3)], ["a"])
    model = PiggybackModel(net, threshold, ternary, "packed")
    model.add_task(nn.Linear(6, 2), "b")
    return model.eval()


@pytest.mark.parametrize("ternary", [False, True])
def test_packed_and_materialised_paths_equal_the_training_time_mask(ternary: bool) -> None:
    model, x = _small_model(ternary=ternary), torch.randn(4, 1, 6, 6)
    model.set_task(1)
    for layer in model.layers.values():
        layer.start_task("uniform", 1e-2)  # about half the bits off (and ternary -1 where m_r < 0)
    with torch.no_grad():
        trained = model(x)
    stats = [layer.finish_task(1) for layer in model.layers.values()]
    assert all(s["zeros"] > 0 for s in stats) and (any(s["minus_ones"] > 0 for s in stats) == ternary)
    for layer in model.layers.values():
        planes = layer.packed(1)
        assert planes is not None and planes.dtype == torch.uint8
        assert planes.shape == (2 if ternary else 1, (layer.layer.weight.numel() + 7) // 8)
    model.use_path(True)
    with torch.no_grad():
        packed = model(x)
    model.use_path(False)
    with torch.no_grad():
        materialised = model(x)
    assert torch.equal(packed, trained) and torch.equal(materialised, trained)


def test_every_bit_is_one_at_step_zero_so_the_net_is_backbone_plus_head() -> None:
    model, x = _small_model(), torch.randn(4, 1, 6, 6)
    model.set_task(1)
    with torch.no_grad():
        plain = model(x)
    for layer in model.layers.values():
        layer.start_task("1s", 1e-2)
    assert all(bool((layer.mask_real > 5e-3).all()) for layer in model.layers.values())  # type: ignore[operator]
    with torch.no_grad():
        assert torch.equal(model(x), plain)


def test_mask_gradient_scaling_divides_by_weight_magnitude() -> None:
    model = _small_model()
    model.set_task(1)
    for layer in model.layers.values():
        layer.start_task("1s", 1e-2)
    model(torch.randn(2, 1, 6, 6)).sum().backward()
    layer = model.layers["0"]
    assert layer.mask_real is not None and layer.mask_real.grad is not None
    before = layer.mask_real.grad.clone()
    MaskGradientScale(model, "average").after_backward(None, model)  # type: ignore[arg-type]
    assert torch.allclose(layer.mask_real.grad, before / layer.layer.weight.abs().mean())


def test_config_rejects_unknown_choices() -> None:
    with pytest.raises(ValueError, match="threshold_fn='sign' is not one of binarizer, ternarizer"):
        PiggybackConfig(threshold_fn="sign")
    assert PiggybackConfig().resolved("paper")["lr_mask"] == 1e-4 and PiggybackConfig().resolved("tiny")["epochs"] == 2


# ---- the whole sequence -------------------------------------------------------------------------------------------
def _backbone(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k.replace(".layer.", "."): v for k, v in model.shared.state_dict().items() if ".mask" not in k}  # type: ignore[union-attr]


def test_frozen_backbone_zero_forgetting_and_packed_masks(tmp_path: Path, monkeypatch) -> None:
    stages: list[list[torch.Tensor]] = []
    original = piggyback.evaluate_upto

    def recording(model: Any, tasks: list[Any], upto: int, device: str) -> list[float]:
        stages.append([_logits(model, task) for task in tasks[: upto + 1]])
        return original(model, tasks, upto, device)

    monkeypatch.setattr(piggyback, "evaluate_upto", recording)
    result, prepared, reference = _run(tmp_path, THREE)
    model, summary = result.model, result.summary
    # the backbone is bit-identical to the dense input model, and task 1 is that model exactly
    expected = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc3.")}
    assert _backbone(model).keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in _backbone(model).items())
    x = prepared.tasks[0].workload.example_inputs(16, offset=3)[0]
    with torch.no_grad():
        assert torch.equal(_logits(model, prepared.tasks[0]), reference.eval()(x))
    assert summary["frozen_backbone"]["identical_after_each_task"] == [True, True]
    assert all(
        s == {"all_mask_bits_one": True, "logits_equal_backbone_plus_head": True} for s in summary["step0"].values()
    )
    # zero forgetting: every task's logits are bit-identical at every later stage
    for stage in stages:
        for index, logits in enumerate(stage):
            assert torch.equal(logits, stages[-1][index])
    assert all(row["bit_identical"] for row in summary["zero_forgetting"]["tasks"])
    # 1 bit per weight and task, packed, and the state dict alone reproduces every task
    storage = summary["storage"]
    assert storage["mask_bits_per_task"] == {"digits[0-4]": 0.0, "digits[5-9]": storage["masked_weights"],
                                             "fashion-mnist[0-4]": storage["masked_weights"]}  # fmt: skip
    for layer in model.layers.values():
        assert layer.packed(0) is None and layer.packed(1).numel() == (layer.layer.weight.numel() + 7) // 8  # type: ignore[union-attr]
    assert summary["reload"]["identical"] and result.execution == "executed"
    assert summary["packed_inference"]["label"] == "executed"


def test_batchnorm_trained_per_task_keeps_the_backbone_and_earlier_tasks(tmp_path: Path) -> None:
    options = {"hidden": "32", "num_hidden_layers": "1"}
    result, prepared, reference = _run(tmp_path, THREE, workload="mlp", options=options, train_bn="true")
    model = result.model
    assert all(row["bit_identical"] for row in result.summary["zero_forgetting"]["tasks"])
    assert result.summary["frozen_backbone"]["identical_after_each_task"] == [True, True]
    with model.serving(0):
        kept = {k: v for k, v in reference.state_dict().items() if not k.startswith(("layers.5.", "layers.6."))}
        assert all(torch.equal(v, kept[k]) for k, v in _backbone(model).items())
    states = [dict(s.named()) for s in model.task_states]
    assert any(not torch.equal(states[0][k], states[1][k]) for k in states[0])  # task 2 trained its own BN
