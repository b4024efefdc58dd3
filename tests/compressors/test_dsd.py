"""Tests of DSD (arXiv 1607.04381) and its LLR control: masks, exact sparsity through S, the restart of D' at zero."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from compressors import COMPRESSORS
from compressors.dsd import DSD, LLR, DSDConfig
from compressors.masks import MaskSet, global_sparsity, magnitude_mask, prunable_weights
from harness.config import RunConfig
from harness.context import RunContext
from harness.train import Callback, Trainer
from workloads.base import Recipe
from workloads.mlp import LeNet3Workload


def test_magnitude_mask_removes_the_smallest_magnitudes_by_hand() -> None:
    w = torch.tensor([0.5, -0.1, 0.3, -0.2])
    assert magnitude_mask(w, 0.5).tolist() == [1.0, 0.0, 1.0, 0.0]
    # floor(0.3 * 4) = 1: only -0.1 goes
    assert magnitude_mask(w, 0.3).tolist() == [1.0, 0.0, 1.0, 1.0]


def test_magnitude_mask_count_is_exact_with_ties() -> None:
    w = torch.tensor([[0.2, 0.2, 0.2], [0.2, 0.2, 0.9]])
    mask = magnitude_mask(w, 0.5)  # k = 3 of six; five tie at 0.2: the first three by position go
    assert int((mask == 0).sum()) == 3
    assert mask.flatten().tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]


def test_prunable_weights_skip_biases_and_norms() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    assert [name for name, _ in prunable_weights(model)] == ["0.weight", "3.weight"]


def test_default_sparsity_follows_the_workload_kind() -> None:
    recipe = Recipe(epochs=3, batch_size=8, lr=0.2)
    assert DSDConfig().resolved("cnn", recipe)["sparsity"] == 0.3
    assert DSDConfig().resolved("speech", recipe)["sparsity"] == 0.5
    assert DSDConfig().resolved("rnn", recipe)["sparsity"] == 0.8
    plan = DSDConfig(sparsity=0.6, sparse_epochs=2).resolved("rnn", recipe)
    assert plan["sparsity"] == 0.6 and plan["sparse_epochs"] == 2 and plan["redense_epochs"] == 3
    assert math.isclose(plan["redense_lr"], 0.02)


def test_config_round_trips_through_json_and_strings() -> None:
    cfg = DSDConfig(sparsity=0.5, iterations=2)
    assert DSDConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert DSDConfig.from_strings({"sparsity": "0.5", "iterations": "2"}) == cfg
    with pytest.raises(ValueError, match="sparsity"):
        DSDConfig(sparsity=1.0)


def test_registered_names() -> None:
    assert COMPRESSORS.get("dsd") is DSD
    assert COMPRESSORS.get("llr") is LLR


class Probe(Callback):
    """Records per-layer zero masks at train start, checks them after every step, and the first gradients."""

    def __init__(self) -> None:
        self.start_zeros: dict[str, torch.Tensor] = {}
        self.first_grads: dict[str, torch.Tensor] = {}
        self.sparsity_after_steps: list[float] = []
        self.lr = math.nan

    def on_train_start(self, trainer: Trainer, model: nn.Module) -> None:
        self.start_zeros = {n: (p == 0).clone() for n, p in prunable_weights(model)}
        self.lr = trainer.recipe.lr

    def after_backward(self, trainer: Trainer, model: nn.Module) -> None:
        if not self.first_grads:
            self.first_grads = {n: p.grad.clone() for n, p in prunable_weights(model) if p.grad is not None}

    def after_step(self, trainer: Trainer, model: nn.Module) -> None:
        self.sparsity_after_steps.append(global_sparsity(model))


class ProbingContext(RunContext):
    """A RunContext whose trainers carry a Probe per phase (by trainer name)."""

    probes: dict[str, Probe]

    def trainer(self, name: str, recipe: Any = None, callbacks: Any = (), optimizer_factory: Any = None) -> Trainer:
        probe = self.probes.setdefault(name, Probe())
        trainer = super().trainer(name, recipe=recipe, callbacks=[*callbacks, probe])
        trainer.progress = False
        return trainer


def _ctx(tmp_path: Path, compressor: str) -> ProbingContext:
    overrides = {"epochs": 1, "batch_size": 32, "max_train_samples": 128, "max_val_samples": 64}
    workload = LeNet3Workload(profile="tiny", dataset="digits", recipe_overrides=overrides)
    ctx = ProbingContext(
        workload=workload, config=RunConfig(workload="lenet3", compressor=compressor), run_dir=tmp_path
    )
    ctx.probes = {}
    return ctx


def test_dsd_sparsity_is_exact_through_s_and_d_prime_restarts_at_zero(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "dsd")
    torch.manual_seed(0)
    model = ctx.workload.build_model()
    result = DSD(DSDConfig(sparsity=0.3)).apply(model, ctx)
    sparse, redense = ctx.probes["sparse1"], ctx.probes["redense1"]
    # S: exactly floor(0.3 N_l) zeros per layer from the first step ...
    weights = dict(prunable_weights(result.model))
    for name, zeros in sparse.start_zeros.items():
        assert int(zeros.sum()) == math.floor(0.3 * weights[name].numel()), name
    # ... and the same global sparsity after every S step (4 steps of 32 samples)
    expected = sum(math.floor(0.3 * p.numel()) for p in weights.values()) / sum(p.numel() for p in weights.values())
    assert len(sparse.sparsity_after_steps) == 4
    assert all(math.isclose(s, expected, abs_tol=1e-9) for s in sparse.sparsity_after_steps)
    # D': the pruned weights start at exactly zero and receive a non-zero gradient
    for name, zeros in sparse.start_zeros.items():
        assert torch.equal(redense.start_zeros[name] & zeros, zeros), name
        assert float(redense.first_grads[name][zeros].abs().sum()) > 0.0, name
    assert math.isclose(redense.lr, 0.1 * ctx.workload.recipe.lr)
    # the final model is dense again (weights feeding units that stayed inactive on these 4 steps may remain 0)
    assert global_sparsity(result.model) < 0.5 * expected
    assert result.execution == "dense"
    assert [p["phase"] for p in result.summary["phases"]] == ["D", "S1", "D'1"]
    assert math.isclose(result.summary["phases"][1]["sparsity"], expected, abs_tol=1e-9)
    assert all(p["seconds"] >= 0 for p in result.summary["phases"])
    assert "dense" in result.summary["execution_note"]


def test_llr_trains_dense_at_the_low_rate_for_dsd_total_epochs(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path, "llr")
    torch.manual_seed(0)
    model = ctx.workload.build_model()
    result = LLR(DSDConfig(sparse_epochs=1, redense_epochs=2)).apply(model, ctx)
    probe = ctx.probes["llr"]
    assert math.isclose(probe.lr, 0.1 * ctx.workload.recipe.lr)
    assert result.summary["plan"]["llr_epochs"] == 3
    assert len(probe.sparsity_after_steps) == 3 * 4  # 3 epochs of 4 minibatches
    assert result.execution == "dense"
    assert [p["phase"] for p in result.summary["phases"]] == ["D", "LLR"]


def test_mask_set_holds_masked_weights_at_zero_under_weight_decay() -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    masks = MaskSet.magnitude(model, 0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    masks.apply_to_weights(model)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 6)).pow(2).sum().backward()
        masks.apply_to_grads(model)
        opt.step()
        masks.apply_to_weights(model)
    assert int((model.weight == 0).sum()) == 9
    assert math.isclose(masks.density(), 0.5)


@pytest.mark.parametrize(("n", "sparsity", "k"), [(90, 0.7, 63), (100, 0.29, 29), (10, 0.3, 3), (7, 0.5, 3)])
def test_magnitude_mask_removes_floor_of_exact_sparsity_times_n(n: int, sparsity: float, k: int) -> None:
    weight = torch.arange(1, n + 1, dtype=torch.float32)
    assert int((magnitude_mask(weight, sparsity) == 0).sum()) == k  # the float product gave k - 1 for the first two


def test_magnitude_mask_breaks_ties_by_position_and_removes_exactly_k() -> None:
    # the paper's rule 1(|W| > lambda) would remove all four tied 0.5s; the suite removes k = 2, the first ones
    weight = torch.tensor([0.5, 2.0, 0.5, 0.5, 3.0, 0.5])
    assert magnitude_mask(weight, 0.34).tolist() == [0.0, 1.0, 0.0, 1.0, 1.0, 1.0]
