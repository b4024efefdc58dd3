"""Taylor pruning (Molchanov, Mallya, Tyree, Frosio, Kautz, CVPR'19, arXiv 1906.10771; NVlabs/Taylor_pruning).

Schedule (official ``pruning_engine.py``, as summarised in PAPERS.md §2):

1. Gates ``z = 1`` after every BN (shared per coupled group, e.g. one gate per ResNet stage's residual stream; see
   :mod:`compressors.taylor_gates`).
2. Pruning phase: train with the fine-tuning optimizer; after every minibatch add the minibatch criterion
   ``I^(b)`` (default Taylor-FO-BN, ``(z ∂L/∂z)^2``); every ``frequency`` minibatches (the first window has
   ``frequency + 1`` batches, as in the official ``do_step``) average, apply pruning momentum
   ``Ī <- μ Ī_prev + (1 - μ) Ī`` (from the second pruning step on), give pruned gates criterion 0, rank all neurons
   globally, ``thr = sort(Ī)[pruned + prune_per_iteration - 1]`` and prune every neuron with ``Ī <= thr`` (the
   official tie rule: ties are all pruned). Stop at the target: a FLOPs or params reduction, a fraction of gates kept
   (the paper's "Taylor-FO-BN-72 %"), or a number of pruned neurons (``prune_neurons_max``).
3. Fine-tune with fresh optimizer state (the official code deletes the momentum buffers once pruning ends), pruned
   channels held at zero.
4. Fold the gates into the BN affine parameters and remove the channels with Torch-Pruning: a plain, smaller dense
   ``nn.Module``. It is saved as a ``torch.export`` program (reloads with ``torch.export.load`` without this code or
   the model's source) in the run folder.

Differs from the official code: gates come from the dependency graph for any CNN instead of hand-placed GateLayers;
a shared gate's criterion is not divided by the official ImageNet-ResNet stage multipliers (a rescale of the
shared gates; ``shared_gate_normalisation=True`` divides by the number of gate sites instead); every group keeps at
least ``min_channels`` channels (the official engine can empty a layer); the official ``set_momentum_zero_sgd`` bug
(it zeroes the momentum of surviving units) is not reproduced; ``taylor_so`` draws its own minibatch because the
Trainer does not expose the training batch to callbacks; fine-tuning uses weight decay 0 like the README command,
without its ``group_wd_coeff`` 1e-8 term; the criterion is read right after the backward pass, before the Trainer
clips gradients and steps, while the official code reads it after both (with clipping, each minibatch's contribution
differs by a factor 1/||g||^2; the selections were equal when the two were run side by side); the record says so
(``summary.criterion_timing``).

Defaults per profile (``None`` fields): paper profile = official ImageNet config (frequency 30, 100 neurons per step,
fine-tune 25 epochs at lr 0.001, step x0.1 every 10 epochs); tiny profile = frequency 10, 1 % of all gates per step,
fine-tune for the recipe's epochs at 0.1x the recipe's lr with its schedule. Default target: 45 % of FLOPs removed,
the paper's ResNet-50 Taylor-FO-BN-72 % row (4.09 -> 2.25 GFLOPs).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from compressors import COMPRESSORS
from compressors.base import CompressedModel, Compressor, CompressorConfig, CompressorInfo
from compressors.masks import MaskCallback
from compressors.taylor_gates import CRITERIA, SECOND_ORDER, GateSet, gate_hessian_diag, minibatch_criteria
from compressors.thinning import CostModel, export_thinned, thin
from harness.context import RunContext
from harness.train import Callback, Trainer
from workloads.base import Recipe

TARGETS = ("flops", "params", "gates", "neurons")
GATE_PLACEMENT = (
    "dependency-graph groups: one gate per channel group after its BN (a ResNet stage's residual stream shares one); "
    "not the official per-block bn2 + per-stage skip placement (see compressors/taylor_gates.py)"
)
EXACT_HESSIAN_MAX = 4096


@dataclass
class TaylorConfig(CompressorConfig):
    """Taylor pruning settings (``None`` = the profile default described in the module docstring).

    Attributes:
        criterion: taylor_fo_bn | taylor_so | weight_fo | weight_magnitude | random.
        target: flops | params (fraction removed), gates (fraction of gates kept), neurons (number pruned).
        target_value: the target's value.
        frequency: minibatches between pruning steps (official 30).
        prune_per_iteration: neurons removed per pruning step (official 100).
        pruning_momentum: μ of the criterion's running average across pruning steps (official 0.9).
        max_pruning_iterations: stop after this many pruning steps even if the target is not reached.
        max_pruning_epochs: safety bound on the pruning phase's length.
        min_channels: channels every group keeps.
        finetune_epochs: epochs after pruning (official 25).
        finetune_lr: learning rate of pruning and fine-tuning (official 0.001).
        shared_gate_normalisation: divide a shared gate's criterion by its number of gate sites.
        hessian: exact | hutchinson, for taylor_so.
        hessian_samples: Rademacher probes per minibatch for hutchinson.
        export: save the thinned model as a torch.export program in the run folder.
    """

    # 2: weight_fo sums the weights' terms only (1 added the bias's); taylor_so's extra minibatch no longer updates BN
    version: ClassVar[int] = 2
    criterion: str = "taylor_fo_bn"
    target: str = "flops"
    target_value: float = 0.45
    frequency: int | None = None
    prune_per_iteration: int | None = None
    pruning_momentum: float = 0.9
    max_pruning_iterations: int | None = None
    max_pruning_epochs: int = 50
    min_channels: int = 1
    finetune_epochs: int | None = None
    finetune_lr: float | None = None
    shared_gate_normalisation: bool = False
    hessian: str = "exact"
    hessian_samples: int = 1
    export: bool = True

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise ValueError(f"Unknown criterion {self.criterion!r}; use one of {', '.join(CRITERIA)}")
        if self.target not in TARGETS:
            raise ValueError(f"Unknown target {self.target!r}; use one of {', '.join(TARGETS)}")
        if self.target in ("flops", "params", "gates") and not 0.0 < self.target_value < 1.0:
            raise ValueError(f"target_value for {self.target} is a fraction in (0, 1), got {self.target_value}")
        if self.hessian not in ("exact", "hutchinson"):
            raise ValueError(f"hessian must be 'exact' or 'hutchinson', got {self.hessian!r}")
        if not 0.0 <= self.pruning_momentum < 1.0:
            raise ValueError(f"pruning_momentum must be in [0, 1), got {self.pruning_momentum}")

    def resolved(self, profile: str, recipe: Recipe, total_gates: int) -> dict[str, Any]:
        """Concrete schedule for a profile, recipe and gate count (``None`` fields take the profile default)."""
        paper = profile == "paper"
        defaults = {
            "frequency": 30 if paper else 10,
            "prune_per_iteration": 100 if paper else max(1, math.ceil(0.01 * total_gates)),
            "finetune_epochs": 25 if paper else recipe.epochs,
            "finetune_lr": 0.001 if paper else 0.1 * recipe.lr,
        }
        plan = {key: getattr(self, key) for key in sorted(self.field_names())}
        for key, value in defaults.items():
            if plan[key] is None:
                plan[key] = value
        plan["total_gates"] = total_gates
        return plan


def _recipes(plan: dict[str, Any], recipe: Recipe, paper: bool) -> tuple[Recipe, Recipe]:
    """(pruning-phase recipe, fine-tuning recipe): the fine-tuning optimizer, weight decay 0 (README command)."""
    base = recipe.replace(lr=plan["finetune_lr"], weight_decay=0.0)
    prune = base.replace(schedule="none")
    finetune = base.replace(schedule="step", step_size=10, gamma=0.1) if paper else base
    return prune, finetune


def select_pruned(
    criteria: list[torch.Tensor], already: int, per_step: int, max_neurons: int | None, min_channels: int
) -> list[torch.Tensor]:
    """Global ranking step of the official ``compute_saliency``.

    ``k = min(already + per_step - 1, max_neurons - 1, total - 1)``, ``thr = sort(all criteria)[k]``, and every
    neuron with criterion ``<= thr`` is pruned (ties are all pruned). Pruned neurons carry criterion 0, so they stay
    pruned. Added guard: each group keeps its ``min_channels`` highest-criterion neurons.

    Returns:
        Per group, a boolean vector of the neurons pruned after this step.
    """
    flat = torch.cat([c.flatten() for c in criteria])
    k = already + per_step - 1
    if max_neurons is not None:
        k = min(k, max_neurons - 1)
    k = max(0, min(k, flat.numel() - 1))
    threshold = torch.sort(flat).values[k]
    result = []
    for crit in criteria:
        pruned = crit <= threshold
        if int((~pruned).sum()) < min_channels:
            pruned[torch.argsort(crit, descending=True, stable=True)[:min_channels]] = False
        result.append(pruned)
    return result


class TaylorPruningCallback(Callback):
    """Accumulates the criterion every minibatch and prunes every ``frequency`` minibatches (official ``do_step``).

    Args:
        gates: the gated model's gates.
        cost: predicts FLOPs/params of the thinned model for the targets.
        plan: resolved :class:`TaylorConfig` values.
        ctx: the run context (data for ``taylor_so``, logging).
        seed: seed of the ``random`` criterion and of Hutchinson probes.
    """

    def __init__(self, gates: GateSet, cost: CostModel, plan: dict[str, Any], ctx: RunContext, seed: int) -> None:
        self.gates, self.cost, self.plan, self.ctx = gates, cost, plan, ctx
        self.modules = dict(gates.model.named_modules())
        self.generator = torch.Generator().manual_seed(seed)
        self.acc: list[torch.Tensor] | None = None
        self.averaged: list[torch.Tensor] | None = None
        self.batches = self.iter = self.steps = 0
        self.done = self.reached = False
        self.log: list[dict[str, float]] = []
        self._so_data: Any = None

    def after_backward(self, trainer: Trainer, model: nn.Module) -> None:
        if not self.done:
            second = self._second_order if self.plan["criterion"] in SECOND_ORDER else None
            crit = minibatch_criteria(self.plan["criterion"], self.gates.groups, self.modules, self.generator, second)
            if self.plan["shared_gate_normalisation"]:
                crit = [c / len(g.sites) for c, g in zip(crit, self.gates.groups, strict=True)]
            self.acc = crit if self.acc is None else [a + c for a, c in zip(self.acc, crit, strict=True)]
            self.batches += 1
        self.gates.zero_grad()

    def after_step(self, trainer: Trainer, model: nn.Module) -> None:
        if self.done:
            return
        if self.iter > 0 and self.iter % self.plan["frequency"] == 0:
            self._prune_step()
        self.iter += 1

    def should_stop(self, trainer: Trainer) -> bool:
        return self.done

    def _second_order(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Gate gradient and Hessian diagonal on a minibatch of its own (the Trainer keeps its batch private). It runs
        in train mode (batch statistics, as the official code) but leaves BatchNorm's running statistics untouched, so
        they are updated once per step, not twice."""
        workload = self.ctx.workload
        if self._so_data is None:
            self._so_data = iter(self.ctx.train_loader())
        batch = next(self._so_data, None)
        if batch is None:
            self._so_data = iter(self.ctx.train_loader())
            batch = next(self._so_data)
        with frozen_bn_statistics(self.gates.model):  # the Trainer's own step already updated them this step
            loss = workload.loss(self.gates.model, workload.move_batch(batch, self.ctx.device))
        exact = self.plan["hessian"] == "exact"
        return gate_hessian_diag(loss, self.gates.gates, exact, self.plan["hessian_samples"], self.generator)

    def _prune_step(self) -> None:
        assert self.acc is not None
        mu = self.plan["pruning_momentum"]
        contribution = [a / self.batches for a in self.acc]
        if self.averaged is None or mu == 0.0:
            self.averaged = contribution
        else:
            self.averaged = [mu * p + (1.0 - mu) * c for p, c in zip(self.averaged, contribution, strict=True)]
        self.acc, self.batches = None, 0
        criteria = [a * g.gate.detach() for a, g in zip(self.averaged, self.gates.groups, strict=True)]
        before = self.gates.num_pruned()
        max_neurons = int(self.plan["target_value"]) if self.plan["target"] == "neurons" else None
        chosen = select_pruned(
            criteria, before, self.plan["prune_per_iteration"], max_neurons, self.plan["min_channels"]
        )
        for i, pruned in enumerate(chosen):
            self.gates.set_pruned(i, pruned)
        self.steps += 1
        self._check_target(progress=self.gates.num_pruned() > before)

    def _check_target(self, progress: bool) -> None:
        kept = self.gates.kept()
        reduction = self.cost.reduction(kept)
        pruned = self.gates.num_pruned()
        kept_fraction = 1.0 - pruned / self.gates.total
        value = self.plan["target_value"]
        self.reached = {
            "flops": reduction["flops"] >= value,
            "params": reduction["params"] >= value,
            "gates": kept_fraction <= value,
            "neurons": pruned >= value,
        }[self.plan["target"]]
        limit = self.plan["max_pruning_iterations"]
        self.done = self.reached or not progress or (limit is not None and self.steps >= limit)
        entry = {
            "step": self.steps,
            "minibatch": self.iter,
            "pruned": pruned,
            "kept_fraction": kept_fraction,
            "flops_reduction": reduction["flops"],
            "params_reduction": reduction["params"],
        }
        self.log.append(entry)
        self.ctx.log(
            f"step {self.steps}: {pruned} neurons pruned, {kept_fraction:.1%} gates kept, "
            f"FLOPs -{reduction['flops']:.1%}, params -{reduction['params']:.1%}"
        )


@COMPRESSORS.register("taylor")
class TaylorPruning(Compressor):
    """Global Taylor-FO-BN channel pruning with physical removal (arXiv 1906.10771)."""

    info = CompressorInfo(
        name="taylor",
        paper="1906.10771",
        kind="pruning",
        needs_data=True,
        supports=("cnn",),
        description="Taylor-FO-BN importance on gates after BN, global iterative channel pruning, physical thinning",
    )
    Config = TaylorConfig

    def apply(self, model: nn.Module, ctx: RunContext) -> CompressedModel:
        cfg: TaylorConfig = self.config  # type: ignore[assignment]
        workload = ctx.workload
        example = workload.example_inputs(2, ctx.device)
        with ctx.phase("dense_eval") as entry:
            entry["metrics"] = ctx.evaluate(model)
        with ctx.phase("gates") as entry:
            gates = GateSet(model, example)
            cost = CostModel(model, gates.groups, example)
            entry.update(groups=len(gates.groups), neurons=gates.total)
        plan = cfg.resolved(workload.profile, workload.recipe, gates.total)
        if plan["criterion"] in SECOND_ORDER and plan["hessian"] == "exact" and gates.total > EXACT_HESSIAN_MAX:
            raise ValueError(
                f"taylor_so with hessian=exact needs one Hessian-vector product per neuron ({gates.total} here); "
                f"use --set hessian=hutchinson for nets with more than {EXACT_HESSIAN_MAX} neurons"
            )
        prune_recipe, finetune_recipe = _recipes(plan, workload.recipe, workload.profile == "paper")
        callback = TaylorPruningCallback(gates, cost, plan, ctx, seed=ctx.seed)
        with ctx.phase("prune") as entry:
            ctx.log(
                f"pruning with {plan['criterion']} to {plan['target']}={plan['target_value']} "
                f"({plan['prune_per_iteration']} neurons every {plan['frequency']} minibatches)"
            )
            ctx.trainer("prune", recipe=prune_recipe, callbacks=[callback]).fit(
                model, epochs=plan["max_pruning_epochs"]
            )
            entry["metrics"] = ctx.evaluate(model)
        pruned = [~k for k in gates.kept()]
        masks = gates.fold()
        with ctx.phase("finetune") as entry:
            trainer = ctx.trainer("finetune", recipe=finetune_recipe, callbacks=[MaskCallback(masks)])
            trainer.fit(model, epochs=plan["finetune_epochs"])
            masks.apply_to_weights(model)
            entry["metrics"] = ctx.evaluate(model)
        masked = model.eval()
        with ctx.phase("thin") as entry:
            thinned = thin(copy.deepcopy(masked), gates.groups, pruned, example).eval()
            entry["max_abs_diff_vs_masked"] = _max_diff(masked, thinned, workload.example_inputs(8, ctx.device))
        summary = _summary(plan, ctx, callback, cost, gates, pruned)
        if cfg.export:
            summary["artifacts"] = export_thinned(thinned, example, ctx.run_dir)
        return CompressedModel(model=thinned, execution="executed", summary=summary, variants={"masked": masked})


def _summary(
    plan: dict[str, Any],
    ctx: RunContext,
    callback: TaylorPruningCallback,
    cost: CostModel,
    gates: GateSet,
    pruned: list[torch.Tensor],
) -> dict[str, Any]:
    """What changed: accuracy after each phase, the pruning trajectory, kept channels per group, the reduction."""
    phases = {p["name"]: p for p in ctx.phases}
    kept = [~p for p in pruned]
    return {
        "plan": plan,
        "gate_placement": GATE_PLACEMENT,
        "criterion_timing": "after backward, before gradient clipping and the optimizer step",
        "dense": phases["dense_eval"]["metrics"],
        "after_pruning": phases["prune"]["metrics"],
        "after_finetune": phases["finetune"]["metrics"],
        "seconds": {name: p["seconds"] for name, p in phases.items()},
        "pruning_steps": callback.log,
        "target_reached": callback.done and callback.reached,
        "estimated_reduction": cost.reduction(kept),
        "kept_per_group": {g.name: f"{int(k.sum())}/{g.size}" for g, k in zip(gates.groups, kept, strict=True)},
        "neurons_pruned": int(sum(int(p.sum()) for p in pruned)),
        "neurons_total": gates.total,
        "thinned_vs_masked_max_abs_diff": phases["thin"]["max_abs_diff_vs_masked"],
        "execution_note": "channels physically removed (executed); the 'masked' variant keeps the dense shape",
    }


@torch.no_grad()
def _max_diff(a: nn.Module, b: nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    return float((a.eval()(*inputs) - b.eval()(*inputs)).abs().max())


@contextlib.contextmanager
def frozen_bn_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm layers normalise with batch statistics (train mode) without updating their running statistics."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True
