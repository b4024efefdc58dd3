"""PackNet (arXiv 1711.05769): the official prune rule on hand-computed cases, gradient masking, zero forgetting on
logits after every later task, the exact per-layer ownership fractions, task models equal to the masked backbone,
and the stored owner mask (uint8 or ceil(log2(T+1))-bit planes) reloading to identical logits."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from compressors.continual import packnet
from compressors.continual.heads import MultiTaskNet
from compressors.continual.masks import pack_codes, unpack_codes
from compressors.continual.metrics import reload_identical
from compressors.continual.packnet import (
    PackNetConfig,
    PackNetMasking,
    PackNetModel,
    expected_owned,
    official_round,
    prune_layer,
)
from harness.config import RunConfig
from harness.context import RunContext
from harness.runner import prepare, seed_everything

SMALL = {"epochs": "1", "max_train_samples": "96", "max_val_samples": "48", "batch_size": "32"}
FAST = {"finetune_epochs": "1", "post_prune_epochs": "1", "controls": "", "latency": "false"}
THREE = "digits[0-4],digits[5-9],fashion-mnist[0-4]"


def _run(tmp_path: Path, tasks: str, workload: str = "lenet3", options: dict | None = None, **args: str) -> Any:
    config = RunConfig(
        workload=workload, compressor="packnet", tasks=tasks.split(","), compressor_args={**FAST, **args},
        recipe_overrides=SMALL, workload_options=options or {},
    )  # fmt: skip
    prepared = prepare(config)
    seed_everything(0)
    model = prepared.workload.build_model()
    ctx = RunContext(prepared.workload, prepared.config, tmp_path, tasks=prepared.tasks)
    return prepared.compressor.apply(model, ctx), prepared


def _logits(model: Any, task: Any) -> torch.Tensor:
    inputs = task.workload.example_inputs(16, offset=3)
    with model.serving(task.index), torch.no_grad():
        return model(*inputs)


# ---- the official rules on hand-computed cases ---------------------------------------------------------------------
def test_round_is_python2s_half_away_from_zero() -> None:
    assert [official_round(x) for x in (2.5, 3.5, 37.5, 0.49)] == [3, 4, 38, 0]  # Python 3's round gives 2, 4, 38


def _layer(weights: list[float], owners: list[int]) -> packnet.PackNetLayer:
    linear = nn.Linear(len(weights), 1, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([weights]))
    layer = packnet.PackNetLayer(linear)
    layer.owner.copy_(torch.tensor([owners], dtype=torch.uint8))
    return layer


def test_prune_frees_the_smallest_magnitudes_of_the_task_only() -> None:
    layer = _layer([0.1, -0.5, 0.3, 0.05, -0.2, 0.4, 0.01], [2, 2, 2, 2, 2, 2, 1])
    stats = prune_layer(layer, code=2, fraction=0.5)  # n = 6, k = round(3) = 3, cutoff = 3rd smallest |w| = 0.2
    assert stats == {"owned_before": 6, "k": 3, "freed": 3, "cutoff": pytest.approx(0.2)}
    assert layer.owner.tolist() == [[0, 2, 2, 0, 0, 2, 1]]  # task 1's 0.01 is smaller but not task 2's to free
    assert layer.layer.weight.tolist()[0] == pytest.approx([0.0, -0.5, 0.3, 0.0, 0.0, 0.4, 0.01])


def test_prune_tie_rule_is_less_or_equal_the_kth_value() -> None:
    layer = _layer([0.1, -0.1, 0.1, 0.5], [1, 1, 1, 1])
    assert prune_layer(layer, code=1, fraction=0.25)["freed"] == 3  # k = 1, but |w| <= 0.1 frees all three ties


def test_expected_ownership_follows_the_fractions() -> None:
    assert expected_owned(100, [0.5, 0.75, -1]) == [50, 12, 38]  # 100 - 50; 50 - round(37.5); the 38 freed
    assert expected_owned(64, [0.5, 0.5, 0.5, -1]) == [32, 16, 8, 8]  # (1-p1), p1(1-p2), p1p2(1-p3), p1p2p3


def test_gradients_of_other_tasks_are_zeroed_and_free_weights_stay_zero() -> None:
    shared = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    model = PackNetModel(MultiTaskNet(shared, [nn.Linear(3, 2)], ["a"]))
    layer = model.layers["0"]
    layer.owner.copy_(torch.tensor([[1, 2, 0, 2]] * 3, dtype=torch.uint8))
    with torch.no_grad():
        layer.layer.weight.masked_fill_(layer.owner == 0, 0.0)
    callback = PackNetMasking(model, code=2)
    callback.on_train_start(None, model)  # type: ignore[arg-type]
    model(torch.randn(5, 4)).sum().backward()
    callback.after_backward(None, model)  # type: ignore[arg-type]
    grad = layer.layer.weight.grad
    assert grad is not None and bool((grad[layer.owner != 2] == 0).all()) and bool((grad[layer.owner == 2] != 0).any())
    with torch.no_grad():
        layer.layer.weight.add_(1.0)  # an optimizer step that would revive the free weights
    callback.after_step(None, model)  # type: ignore[arg-type]
    assert bool((layer.layer.weight[layer.owner == 0] == 0).all())


def test_config_checks_fractions_and_controls() -> None:
    assert PackNetConfig().fractions(4) == [0.5, 0.75, 0.75, -1.0]
    with pytest.raises(ValueError, match="must be in"):
        PackNetConfig(prune_fractions="0.5,1.2")
    with pytest.raises(ValueError, match="gives 2 values for a sequence of 3"):
        PackNetConfig(prune_fractions="0.5,-1").resolved("tiny", 3)
    with pytest.raises(ValueError, match="unknown"):
        PackNetConfig(controls="joint")


# ---- the whole sequence -------------------------------------------------------------------------------------------
def test_zero_forgetting_ownership_and_task_models(tmp_path: Path, monkeypatch) -> None:
    stages: list[list[torch.Tensor]] = []
    original = packnet._Sequence.task_done

    def recording(self: Any, index: int) -> None:
        original(self, index)
        stages.append([_logits(self.model, task) for task in self.tasks[: index + 1]])

    monkeypatch.setattr(packnet._Sequence, "task_done", recording)
    result, prepared = _run(tmp_path, THREE, prune_fractions="0.5,0.75,-1")
    model, summary = result.model, result.summary
    # zero forgetting, on logits: every earlier task's logits are bit-identical after every later task
    for stage in stages:
        for index, logits in enumerate(stage):
            assert torch.equal(logits, stages[-1][index]), (index, len(stage))
    assert all(row["bit_identical"] for row in summary["zero_forgetting"]["tasks"])
    assert summary["accuracy"]["forgetting"][:2] == [0.0, 0.0]
    # ownership per layer: exactly n - round(p1 n), then round(p1 n) - round(p2 round(p1 n)), then the rest
    for name, layer in model.layers.items():
        n = layer.owner.numel()
        counts = [int((layer.owner == code).sum()) for code in range(4)]
        assert counts == [0, *expected_owned(n, [0.5, 0.75, -1])], name
        assert abs(counts[1] / n - 0.5) <= 1 / n and abs(counts[2] / n - 0.5 * 0.25) <= 1 / n
    assert summary["ownership"]["exact"]
    # a task's model is the backbone masked by its owner set, plus its head
    for task in prepared.tasks:
        plain = model.task_model(task.index)
        assert torch.equal(plain(task.workload.example_inputs(16, offset=3)[0]), _logits(model, task))
        keep = (model.layers["conv2"].owner > 0) & (model.layers["conv2"].owner <= task.index + 1)
        expected = torch.where(keep, model.layers["conv2"].layer.weight, 0.0)
        assert torch.equal(plain[0].conv2.weight, expected)
    assert result.execution == "simulated" and not any("served" in k for k in model.state_dict())


def test_owner_mask_storage_reloads_to_identical_logits(tmp_path: Path) -> None:
    result, prepared = _run(tmp_path, "digits[0-4],digits[5-9]")
    model, storage = result.model, result.summary["storage"]
    assert storage["owner_mask"]["packed_bits_per_weight"] == 2 and storage["owner_mask"]["packed_roundtrip_identical"]
    assert set(result.weight_bits) == {f"shared.{n}.owner" for n in model.layers} <= set(model.state_dict())
    assert storage["mask_bits_per_task"]["digits[0-4]"] == 2 * storage["masked_weights"] / 2
    # the stored state (weights, 2-bit packed owner planes, heads) alone gives the same logits for every task
    state = model.state_dict()
    packed = {f"shared.{n}.owner": pack_codes(layer.owner, 2) for n, layer in model.layers.items()}
    state.update({k: unpack_codes(v, state[k].shape) for k, v in packed.items()})
    fresh = copy.deepcopy(model)
    for tensor in fresh.state_dict().values():
        tensor.zero_()
    fresh.load_state_dict(state)
    for task in prepared.tasks:
        assert torch.equal(_logits(fresh, task), _logits(model, task))
    assert reload_identical(model, prepared.tasks, "cpu")["identical"]


def test_biases_and_batchnorm_trained_per_task_keep_zero_forgetting(tmp_path: Path) -> None:
    options = {"hidden": "32", "num_hidden_layers": "1"}
    result, prepared = _run(tmp_path, THREE, workload="mlp", options=options, train_bn="true", train_biases="true")
    model = result.model
    assert all(row["bit_identical"] for row in result.summary["zero_forgetting"]["tasks"])
    states = [dict(state.named()) for state in model.task_states]
    assert all(states) and set(states[0]) == set(states[2])  # every task has its own biases and BN statistics
    assert any(not torch.equal(states[1][k], states[2][k]) for k in states[1])  # and they differ
