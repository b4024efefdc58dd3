"""Tests of Taylor pruning (arXiv 1906.10771): criteria by hand, the global tie rule, the pruning schedule,
physical thinning, export/reload, and the criterion-vs-oracle correlation of paper §5."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from compressors import COMPRESSORS
from compressors.base import IncompatibleWorkloadError
from compressors.taylor import TaylorConfig, TaylorPruning, TaylorPruningCallback, select_pruned
from compressors.taylor_gates import GateSet, fo_gate, gate_hessian_diag, so_gate, weight_fo, weight_magnitude
from compressors.taylor_oracle import criterion_oracle_correlation
from compressors.thinning import CostModel, export_thinned, load_thinned, thin
from harness.config import RunConfig
from harness.context import RunContext
from harness.meters.flops import count_flops
from workloads.mlp import LeNet3Workload, MLPWorkload


def _hand_net() -> tuple[nn.Module, GateSet, torch.Tensor]:
    """h = W1 x with W1 = diag(1, 2), x = (1, 1); out = w2 . (z * h), w2 = (3, -1); L = out^2 / 2 = 0.5."""
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        net[1].weight.copy_(torch.tensor([[3.0, -1.0]]))
    x = torch.ones(1, 2)
    gates = GateSet(net, (x,))
    return net, gates, x


def test_first_and_second_order_criteria_equal_hand_values() -> None:
    net, gates, x = _hand_net()
    assert len(gates.groups) == 1 and gates.groups[0].sites == ["0"]
    loss = 0.5 * net(x).pow(2).sum()
    # out = 3*1 - 1*2 = 1; dL/dz_m = out * w2_m * h_m = (3, -2); d2L/dz_m^2 = (w2_m h_m)^2 = (9, 4)
    grads, diag = gate_hessian_diag(loss, gates.gates, exact=True)
    assert grads[0].tolist() == [3.0, -2.0]
    assert diag[0].tolist() == [9.0, 4.0]
    gate = gates.groups[0].gate
    assert fo_gate(gate, grads[0]).tolist() == [9.0, 4.0]
    # SO: (-z g + z^2 H / 2)^2 = (-3 + 4.5)^2 = 2.25 and (2 + 2)^2 = 16
    assert so_gate(gate, grads[0], diag[0]).tolist() == [2.25, 16.0]


def test_weight_criteria_equal_hand_values() -> None:
    net, gates, x = _hand_net()
    (0.5 * net(x).pow(2).sum()).backward()
    # dL/dW1[m, :] = out * w2_m * x = (3, 3) and (-1, -1); (w g)^2 summed per row: 9 + 0 and 0 + 4
    assert weight_fo([net[0]], 2).tolist() == [9.0, 4.0]
    assert weight_magnitude([net[0]], 2).tolist() == [1.0, 4.0]
    assert fo_gate(gates.groups[0].gate, gates.groups[0].gate.grad).tolist() == [9.0, 4.0]


def test_weight_fo_uses_the_weights_alone_as_the_official_method_0() -> None:
    layer = torch.nn.Linear(2, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        layer.bias.copy_(torch.tensor([5.0, -5.0]))
    layer(torch.tensor([[1.0, 1.0]])).sum().backward()  # dL/dW = x = 1, dL/db = 1
    assert weight_fo([layer], 2).tolist() == [1.0, 4.0]  # the bias's (5 * 1)^2 = 25 is not added
    with pytest.raises(ValueError, match="version 1 cannot be loaded by version 2"):
        TaylorConfig.from_dict({**TaylorConfig().to_dict(), "version": 1})


def test_global_ranking_tie_free() -> None:
    chosen = select_pruned([torch.tensor([0.1, 0.4]), torch.tensor([0.2, 0.5])], 0, 2, None, 1)
    assert [c.tolist() for c in chosen] == [[True, False], [True, False]]


def test_global_ranking_prunes_all_ties_and_keeps_min_channels() -> None:
    criteria = [torch.tensor([0.1, 0.3, 0.3]), torch.tensor([0.3, 0.5])]
    # k = 1 -> thr = sorted[1] = 0.3; every criterion <= 0.3 goes (official rule), 4 neurons for a step of 2
    chosen = select_pruned(criteria, 0, 2, None, 0)
    assert [c.tolist() for c in chosen] == [[True, True, True], [True, False]]
    # the guard keeps the best neuron of an emptied group (first of the tied best)
    chosen = select_pruned(criteria, 0, 2, None, 1)
    assert [c.tolist() for c in chosen] == [[True, False, True], [True, False]]


def test_global_ranking_counts_already_pruned_and_caps_at_max_neurons() -> None:
    criteria = [torch.tensor([0.0, 0.4, 0.6]), torch.tensor([0.2, 0.5])]
    chosen = select_pruned(criteria, 1, 1, None, 1)  # k = 1 -> thr = 0.2
    assert [c.tolist() for c in chosen] == [[True, False, False], [True, False]]
    chosen = select_pruned(criteria, 1, 10, 3, 1)  # k = min(10, 3 - 1) = 2 -> thr = 0.4
    assert [c.tolist() for c in chosen] == [[True, True, False], [True, False]]


class _Log:
    def log(self, message: str) -> None:
        self.last = message


def test_schedule_first_window_frequency_plus_one_and_momentum() -> None:
    net, gates, _ = _hand_net()
    cost = CostModel(net, gates.groups, (torch.ones(1, 2),))
    plan = {**TaylorConfig(frequency=2, prune_per_iteration=1, target="neurons", target_value=2).to_dict()}
    callback = TaylorPruningCallback(gates, cost, plan, _Log(), seed=0)  # type: ignore[arg-type]
    gate = gates.groups[0].gate

    def batch(grad: list[float]) -> None:
        gate.grad = torch.tensor(grad)
        callback.after_backward(None, net)  # type: ignore[arg-type]
        callback.after_step(None, net)  # type: ignore[arg-type]

    batch([1.0, 2.0])
    batch([1.0, 2.0])
    assert callback.steps == 0
    batch([4.0, 2.0])  # iteration 2: first step after 3 minibatches, mean of (1, 4), (1, 4), (16, 4) = (6, 4)
    assert callback.steps == 1
    assert callback.averaged is not None and callback.averaged[0].tolist() == [6.0, 4.0]
    assert gate.tolist() == [1.0, 0.0]
    batch([1.0, 0.0])
    batch([1.0, 0.0])  # second window: 2 minibatches, mean (1, 0); momentum 0.9 * (6, 4) + 0.1 * (1, 0)
    assert callback.steps == 2
    assert torch.allclose(callback.averaged[0], torch.tensor([5.5, 3.6]))
    assert callback.done and callback.reached is False  # min_channels=1 keeps the last neuron: no progress
    assert gate.tolist() == [1.0, 0.0]


def _random_prune(model: nn.Module, x: torch.Tensor, fraction: float) -> tuple[GateSet, list[torch.Tensor]]:
    gates = GateSet(model, (x,))
    generator = torch.Generator().manual_seed(0)
    pruned = []
    for i, group in enumerate(gates.groups):
        mask = torch.rand(group.size, generator=generator) < fraction
        mask[0] = False
        gates.set_pruned(i, mask)
        pruned.append(mask)
    return gates, pruned


def test_thinned_output_equals_masked_output_on_resnet18(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(4, 3, 32, 32)
    gates, pruned = _random_prune(model, x, 0.4)
    stage_group = next(g for g in gates.groups if g.name == "layer4.0.downsample.0")
    assert stage_group.sites == ["layer4.0.bn2", "layer4.0.downsample.1", "layer4.1.bn2"]  # shared skip gate
    cost = CostModel(model, gates.groups, (x,))
    with torch.no_grad():
        gated = model(x)
    gates.fold()
    thinned = thin(copy.deepcopy(model), gates.groups, pruned, (x,)).eval()
    with torch.no_grad():
        masked, out = model(x), thinned(x)
    assert torch.allclose(gated, masked, atol=1e-6)
    assert torch.allclose(out, masked, atol=1e-5)
    assert thinned.layer4[0].downsample[0].out_channels == int((~pruned[gates.groups.index(stage_group)]).sum())
    flops = count_flops(thinned, (x[:1],))["flops"] / count_flops(model, (x[:1],))["flops"]
    assert math.isclose(cost.reduction([~p for p in pruned])["flops"], 1.0 - flops, rel_tol=1e-6)
    # save -> reload without the model's code -> identical outputs, any batch size
    path = export_thinned(thinned, (x[:2],), tmp_path)["torch_export"]
    reloaded = load_thinned(path)
    with torch.no_grad():
        assert torch.equal(reloaded(x), out)


def test_thinned_model_exports_to_onnx(tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from harness.backends.onnxruntime import export_onnx

    torch.manual_seed(0)
    model = LeNet3Workload(profile="tiny", dataset="digits").build_model().eval()
    x = torch.randn(3, 1, 28, 28)
    gates, pruned = _random_prune(model, x, 0.5)
    gates.fold()
    thinned = thin(copy.deepcopy(model), gates.groups, pruned, (x,)).eval()
    export_onnx(thinned, (x,), tmp_path / "thin.onnx")
    session = ort.InferenceSession(str(tmp_path / "thin.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), thinned(x), atol=1e-4)


def _ctx(tmp_path: Path, workload: Any) -> RunContext:
    return RunContext(
        workload=workload, config=RunConfig(workload=workload.info.name, compressor="taylor"), run_dir=tmp_path
    )


def test_taylor_refuses_non_cnn_workloads() -> None:
    assert COMPRESSORS.get("taylor") is TaylorPruning
    with pytest.raises(IncompatibleWorkloadError, match="cnn"):
        TaylorPruning().check_compatible(MLPWorkload(profile="tiny", dataset="digits"))


def test_taylor_apply_removes_flops_and_thinned_matches_masked(tmp_path: Path) -> None:
    overrides = {"epochs": 1, "batch_size": 32, "max_train_samples": 192, "max_val_samples": 64}
    workload = LeNet3Workload(profile="tiny", dataset="digits", recipe_overrides=overrides)
    torch.manual_seed(0)
    model = workload.build_model()
    cfg = TaylorConfig(target="flops", target_value=0.3, frequency=2, prune_per_iteration=10, finetune_epochs=1)
    result = TaylorPruning(cfg).apply(model, _ctx(tmp_path, workload))
    x = workload.example_inputs(1)
    dense_flops = count_flops(workload.build_model(), x)["flops"]
    thinned_flops = count_flops(result.model, x)["flops"]
    assert result.execution == "executed" and result.summary["target_reached"]
    assert result.summary["gate_placement"].startswith("dependency-graph groups")  # the record names the placement
    assert 1.0 - thinned_flops / dense_flops >= 0.3
    assert math.isclose(result.summary["estimated_reduction"]["flops"], 1.0 - thinned_flops / dense_flops)
    masked = result.variants["masked"]
    assert (
        masked.conv1.out_channels == 16 and result.model.conv1.out_channels < 16 or result.model.fc1.out_features < 120
    )
    batch = workload.example_inputs(8)
    with torch.no_grad():
        assert torch.allclose(result.model(*batch), masked(*batch), atol=1e-5)
    reloaded = load_thinned(result.summary["artifacts"]["torch_export"])
    with torch.no_grad():
        assert torch.equal(reloaded(*batch), result.model(*batch))


def test_fo_criterion_correlates_with_the_oracle() -> None:
    """Paper §5 on a small LeNet-style net (digits, 8x8): Spearman's rho of Taylor-FO vs the oracle."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(15):
        for i in range(0, 1400, 64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    batches = [(x[1400 + i : 1400 + i + 32], y[1400 + i : 1400 + i + 32]) for i in range(0, 384, 32)]

    def loss_fn(model: nn.Module, batch: Any) -> torch.Tensor:
        return nn.functional.cross_entropy(model(batch[0]), batch[1])

    fo = criterion_oracle_correlation(net, batches, loss_fn, (x[:2],), "taylor_fo_bn")
    magnitude = criterion_oracle_correlation(net, batches, loss_fn, (x[:2],), "weight_magnitude")
    assert fo["neurons"] == 8 + 16 + 32
    assert fo["spearman"] > 0.9
    assert fo["spearman"] > magnitude["spearman"]


@pytest.mark.paper
def test_fo_criterion_correlates_with_the_oracle_on_lenet3() -> None:
    """Paper §5 / Table 1 on the lenet3 workload (digits at 28x28, 3 epochs): Spearman's rho > 0.9 for Taylor-FO."""
    from harness.train import Trainer

    torch.manual_seed(0)
    workload = LeNet3Workload(profile="tiny", dataset="digits", recipe_overrides={"epochs": 3})
    model = workload.build_model()
    Trainer(workload, progress=False).fit(model)
    loader = workload.dataloader("train", batch_size=32, shuffle=False)
    batches = [b for _, b in zip(range(12), loader, strict=False)]
    fo = criterion_oracle_correlation(model, batches, workload.loss, workload.example_inputs(2), "taylor_fo_bn")
    assert fo["neurons"] == 16 + 32 + 120 + 84
    assert fo["spearman"] > 0.9


def test_config_defaults_per_profile_and_json_round_trip() -> None:
    import json

    from workloads.base import Recipe

    recipe = Recipe(epochs=4, batch_size=64, lr=0.05)
    tiny = TaylorConfig().resolved("tiny", recipe, total_gates=1000)
    assert (tiny["frequency"], tiny["prune_per_iteration"], tiny["finetune_epochs"]) == (10, 10, 4)
    assert math.isclose(tiny["finetune_lr"], 0.005)
    paper = TaylorConfig().resolved("paper", recipe, total_gates=1000)
    assert (paper["frequency"], paper["prune_per_iteration"], paper["finetune_epochs"], paper["finetune_lr"]) == (
        30,
        100,
        25,
        0.001,
    )
    assert TaylorConfig(finetune_epochs=0).resolved("tiny", recipe, 1000)["finetune_epochs"] == 0
    cfg = TaylorConfig(criterion="weight_fo", target="gates", target_value=0.72)
    assert TaylorConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="criterion"):
        TaylorConfig(criterion="taylor")


def test_second_order_minibatch_leaves_batchnorm_running_statistics_alone() -> None:
    from compressors.taylor import frozen_bn_statistics

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).train()
    before = (net[1].running_mean.clone(), net[1].running_var.clone(), int(net[1].num_batches_tracked))
    x = torch.randn(8, 3) * 5 + 2
    with frozen_bn_statistics(net):
        out = net(x)
    assert out.mean(0).abs().max() < 1e-5  # still normalised with the batch's own statistics
    assert torch.equal(net[1].running_mean, before[0]) and torch.equal(net[1].running_var, before[1])
    assert int(net[1].num_batches_tracked) == before[2] and net[1].track_running_stats
    net(x)
    assert not torch.equal(net[1].running_mean, before[0])  # outside the block they update as usual
