"""PackNet: adding multiple tasks to a single network by iterative pruning (Mallya & Lazebnik, CVPR'18,
arXiv 1711.05769). Behavioural reference: arunmallya/packnet @7b6032c (``src/prune.py``, ``main.py``, ``scripts``).

Algorithm (paper §3). Every conv/linear weight of the shared network (all layers but the task heads) has an owner
``o ∈ {0, 1, ..., T}`` (uint8; 0 = free). Task 1 is the dense baseline (the paper's ImageNet network): ``o ≡ 1``.

* Task 1: prune a fraction ``p_1`` of each layer's weights (the official ImageNet pruning), then retrain with its
  biases and BatchNorm trained (``--train_biases --train_bn``).
* Task t > 1: every free weight is given to t (``make_finetuning_mask``); a new head is added; train with the
  gradients of the weights owned by earlier tasks zeroed after each backward (``make_grads_zero``: ``g[o != t] = 0``)
  and the free weights zeroed after each step (``make_pruned_zero``); biases and BatchNorm frozen (BN in eval mode,
  the default ``nobias-nobn`` runs) unless ``train_biases`` / ``train_bn`` (then each task keeps its own copies).
* Prune (``pruning_mask``): per layer, among the ``n_t`` weights with ``o = t``, ``cutoff = kthvalue(|w|,
  round(p_t n_t))`` and every weight with ``o = t`` and ``|w| <= cutoff`` is freed (``o = 0``, ``w = 0``); then
  retrain (post-prune epochs) with the same masking. The last task is not pruned (``PRUNE_STR 0.75,0.75,-1``).
* Inference on task t: ``W ⊙ 1(0 < o <= t)`` (``apply_mask``) and head t. Here a switch materialises that weight
  once into a served copy (``set_task``), so inference then runs at dense speed; the stored state is the weights,
  the owner mask and the heads.

Consequences checked in tests and in every run's summary: earlier tasks' logits are bit-identical after later tasks
are added (zero forgetting), task t owns exactly ``(1 - p_1)``, ``p_1 (1 - p_2)``, ... of each layer (up to the
rounding of ``round(p n)``), and a task's model is the backbone masked by its owner set plus its head.

Official defaults (paper profile): ``p = 0.5`` for task 1, ``0.75`` for added tasks, last task unpruned; SGD momentum
0.9, weight decay 0, batch 32; added tasks: 20 epochs at lr 1e-3 then 10 post-prune epochs at 1e-4, both decayed
x0.1 every 10 epochs; task 1: 10 post-prune epochs at 1e-4 decayed every 5. Tiny profile (CPU minutes): 2 + 1
epochs at 10x those rates and the workload's tiny batch, recorded in the summary's ``plan``.

Differs from the official code: ``round`` is Python 2's (half away from zero, as the official Python 2 code ran),
written out because Python 3 rounds half to even; the final epoch's model is kept (the official scripts keep the
epoch with the best *test* accuracy, a selection on the test set); task 1 is the workload's dense baseline on its
own dataset rather than an ImageNet-pretrained network.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compressors.base import CompressedModel, Compressor, CompressorConfig, CompressorInfo
from compressors.continual.controls import run_controls
from compressors.continual.heads import MultiTaskNet
from compressors.continual.masks import (
    MaskedLayer,
    masked_layers,
    pack_codes,
    packed_bytes,
    unpack_codes,
    unwrap,
    wrap_layers,
)
from compressors.continual.metrics import (
    evaluate_upto,
    matrix_record,
    metric_of,
    probe_logits,
    zero_forgetting,
)
from compressors.continual.reporting import latency_report, storage_report
from compressors.continual.training import (
    add_task_head,
    check_image_classifier,
    multitask_from_baseline,
    parse_controls,
    per_task_names,
    require_tasks,
    set_trainable,
    step_recipe,
)
from harness.train import Callback, Trainer

PAPER = {"finetune_epochs": 20, "post_prune_epochs": 10, "lr": 1e-3, "post_prune_lr": 1e-4, "lr_decay_every": 10,
         "first_lr_decay_every": 5, "batch_size": 32}  # fmt: skip
TINY = {"finetune_epochs": 2, "post_prune_epochs": 1, "lr": 1e-2, "post_prune_lr": 1e-3, "lr_decay_every": 10,
        "first_lr_decay_every": 5, "batch_size": 0}  # fmt: skip
FIRST, ADDED = 0.5, 0.75  # run_imagenet_pruning.sh 0.5; run_sequence.sh PRUNE_STR 0.75,0.75,-1


def official_round(x: float) -> int:
    """Python 2's ``round`` for x >= 0: half away from zero (prune.py ``round(prune_perc * numel)``)."""
    return int(math.floor(x + 0.5))


@dataclass
class PackNetConfig(CompressorConfig):
    """``0`` means "the profile's default" (the resolved values are recorded in the summary's ``plan``).

    Attributes:
        prune_fractions: ``p_t`` per task, comma-separated (``-1`` = not pruned); "" = official (0.5, 0.75, ..., -1).
        controls: which controls to train in the same run: ``separate`` (one network per task), ``finetune``
            (plain sequential fine-tuning); "" for none.
        latency: measure per-task and task-switch latency (SingleStream, the run's measure profile).
    """

    version = 1
    prune_fractions: str = ""
    finetune_epochs: int = 0
    post_prune_epochs: int = 0
    lr: float = 0.0
    post_prune_lr: float = 0.0
    lr_decay_every: int = 0
    first_lr_decay_every: int = 0
    lr_decay_factor: float = 0.1
    batch_size: int = 0
    train_biases: bool = False
    train_bn: bool = False
    controls: str = "separate,finetune"
    latency: bool = True

    def __post_init__(self) -> None:
        parse_controls(self.controls)
        self.fractions(2)
        for name in ("finetune_epochs", "post_prune_epochs", "lr_decay_every", "first_lr_decay_every", "batch_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0 = the profile's default)")
        if not 0 < self.lr_decay_factor <= 1:
            raise ValueError(f"lr_decay_factor={self.lr_decay_factor} must be in (0, 1]")

    def fractions(self, count: int) -> list[float]:
        if not self.prune_fractions:
            return [FIRST] + [ADDED] * (count - 2) + [-1.0]
        values = [float(v) for v in self.prune_fractions.split(",") if v.strip()]
        if any(not (v < 1.0) or (0 > v and v != -1.0) for v in values):
            raise ValueError(f"prune_fractions {self.prune_fractions!r}: each must be in [0, 1) or -1 (not pruned)")
        if count > 2 and len(values) != count:
            raise ValueError(f"prune_fractions gives {len(values)} values for a sequence of {count} tasks")
        return values

    def resolved(self, profile: str, count: int) -> dict[str, Any]:
        defaults = PAPER if profile == "paper" else TINY
        plan = {key: getattr(self, key) or default for key, default in defaults.items()}
        fractions = self.fractions(count)
        if all(f <= 0 for f in fractions[:-1]):
            raise ValueError("prune_fractions frees no weight for the later tasks; prune at least one earlier task")
        return {**plan, "prune_fractions": fractions, "lr_decay_factor": self.lr_decay_factor,
                "train_biases": self.train_biases, "train_bn": self.train_bn, "profile_defaults": profile}  # fmt: skip


class PackNetLayer(MaskedLayer):
    """A shared conv/linear layer with its uint8 owner mask (0 = free, t = owned by task t)."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__(layer)
        self.register_buffer("owner", torch.ones_like(layer.weight, dtype=torch.uint8))

    def serve(self, code: int, latest: int) -> None:
        """``apply_mask``: the weight of task ``code`` is ``W ⊙ 1(0 < o <= code)``; the latest task uses W as is
        (no weight has ``o > latest``, and the free ones are 0)."""
        if code >= latest:
            self.served = None
            return
        keep = (self.owner > 0) & (self.owner <= code)
        self.served = torch.where(keep, self.layer.weight.detach(), 0.0)


class PackNetModel(MultiTaskNet):
    """The packed network: shared weights with owner masks, one head per task; ``set_task`` applies the mask."""

    def __init__(self, net: MultiTaskNet) -> None:
        super().__init__(net.shared, list(net.heads), net.task_names, net.freeze_shared_bn)
        wrap_layers(self.shared, PackNetLayer)
        self.register_buffer("tasks_trained", torch.tensor(1))

    @property
    def layers(self) -> dict[str, PackNetLayer]:
        return masked_layers(self.shared)  # type: ignore[return-value]

    def set_task(self, index: int) -> None:
        super().set_task(index)
        latest = int(self.tasks_trained)
        with torch.no_grad():
            for layer in self.layers.values():
                layer.serve(index + 1, latest)

    def task_model(self, index: int) -> nn.Module:
        """Task ``index``'s own network: the backbone masked by its owner set, and its head (plain layers)."""
        with self.serving(index):
            weights = {n: layer.forward_weight().detach().clone() for n, layer in self.layers.items()}
            plain = unwrap(self.shared, weights)
            return nn.Sequential(plain, copy.deepcopy(self.heads[index])).eval()

    def owned(self) -> dict[str, list[int]]:
        """Per layer: how many weights are free (index 0) and owned by task 1, 2, ..."""
        count = self.num_tasks
        return {n: [int((lay.owner == c).sum()) for c in range(count + 1)] for n, lay in self.layers.items()}


class PackNetMasking(Callback):
    """``make_grads_zero`` after every backward and ``make_pruned_zero`` after every step, for task ``code``."""

    def __init__(self, model: PackNetModel, code: int) -> None:
        self.model, self.code = model, code

    def on_train_start(self, trainer: Trainer, model: nn.Module) -> None:
        layers = list(self.model.layers.values())
        self.frozen = [(layer.layer.weight, layer.owner != self.code) for layer in layers]
        self.free = [(layer.layer.weight, layer.owner == 0) for layer in layers]
        self.free = [(w, m) for w, m in self.free if bool(m.any())]

    def after_backward(self, trainer: Trainer, model: nn.Module) -> None:
        for weight, frozen in self.frozen:
            if weight.grad is not None:
                weight.grad.masked_fill_(frozen, 0.0)

    def after_step(self, trainer: Trainer, model: nn.Module) -> None:
        with torch.no_grad():
            for weight, free in self.free:
                weight.masked_fill_(free, 0.0)


def prune_layer(layer: PackNetLayer, code: int, fraction: float) -> dict[str, Any]:
    """``pruning_mask``: free the weights of task ``code`` with ``|w| <= kthvalue(|w|, round(p n))``."""
    owner, weight = layer.owner, layer.layer.weight.data
    mine = owner == code
    n = int(mine.sum())
    k = official_round(fraction * n)
    if k == 0:
        return {"owned_before": n, "k": 0, "freed": 0}
    cutoff = weight[mine].abs().kthvalue(k).values
    remove = (weight.abs() <= cutoff) & mine
    owner[remove] = 0
    weight[remove] = 0.0
    return {"owned_before": n, "k": k, "freed": int(remove.sum()), "cutoff": float(cutoff)}


def expected_owned(numel: int, fractions: list[float]) -> list[int]:
    """Weights each task owns in a layer of ``numel`` weights: ``n - round(p_1 n)``, then of the freed ones ... ."""
    owned, available = [], numel
    for p in fractions:
        freed = official_round(p * available) if p > 0 else 0
        owned.append(available - freed)
        available = freed
    return owned


class _Sequence:
    """What the run records as tasks are added: the accuracy matrix columns, the probe logits, prune statistics."""

    def __init__(self, model: PackNetModel, tasks: list[Any], device: str) -> None:
        self.model, self.tasks, self.device = model, tasks, device
        self.columns: list[list[float]] = []
        self.probes: list[torch.Tensor] = []
        self.pruned: dict[str, Any] = {}

    def task_done(self, index: int) -> None:
        self.columns.append(evaluate_upto(self.model, self.tasks, index, self.device))
        self.probes.append(probe_logits(self.model, self.tasks[index], self.device))


class PackNet(Compressor):
    """PackNet (arXiv 1711.05769): iterative pruning frees weights for each new task; earlier tasks' weights frozen."""

    info = CompressorInfo(
        name="packnet",
        paper="1711.05769",
        kind="multitask",
        needs_data=True,
        supports=("cnn", "mlp"),
        description="adds tasks to one network: prune each task's weights by magnitude, freeze them for later tasks",
    )
    Config = PackNetConfig

    def check_compatible(self, workload: Any) -> None:
        check_image_classifier(self.info, workload)

    def apply(self, model: nn.Module, ctx: Any) -> CompressedModel:
        cfg: PackNetConfig = self.config  # type: ignore[assignment]
        tasks = require_tasks(ctx, "packnet")
        plan = cfg.resolved(ctx.workload.profile, len(tasks))
        controls = parse_controls(cfg.controls)
        baseline = copy.deepcopy(model) if controls else None
        dense = metric_of(tasks[0], model, ctx.device)
        net = PackNetModel(multitask_from_baseline(model, tasks, ctx.device))
        seq = _Sequence(net, tasks, ctx.device)
        for task in tasks:
            self._task(net, ctx, task, plan, seq)
        final = [probe_logits(net, task, ctx.device) for task in tasks]
        summary = self._summary(net, tasks, plan, seq, final, dense)
        if cfg.latency:
            summary["latency"] = latency_report(net, tasks, ctx)
        if baseline is not None:
            summary["controls"] = run_controls(ctx, controls, baseline, tasks, lambda t: self._recipe(t, plan, "ft"))
        net.set_task(0)
        bits = _code_bits(len(tasks))
        weight_bits = {f"shared.{name}.owner": float(bits) for name in net.layers}
        return CompressedModel(model=net.eval(), execution="simulated", summary=summary, weight_bits=weight_bits)

    def _recipe(self, task: Any, plan: dict[str, Any], phase: str) -> Any:
        first = task.index == 0
        lr, epochs = (
            (plan["lr"], plan["finetune_epochs"])
            if phase == "ft"
            else (plan["post_prune_lr"], plan["post_prune_epochs"])
        )
        every = plan["first_lr_decay_every"] if first else plan["lr_decay_every"]
        source = f"PackNet {'finetune' if phase == 'ft' else 'post-prune'} ({plan['profile_defaults']} profile)"
        return step_recipe(
            task.workload.recipe, "sgd", lr, epochs, every, plan["lr_decay_factor"], plan["batch_size"], source
        )

    def _task(self, net: PackNetModel, ctx: Any, task: Any, plan: dict[str, Any], seq: _Sequence) -> None:
        index, code = task.index, task.index + 1
        fraction = plan["prune_fractions"][index]
        names = per_task_names(net, plan["train_biases"], plan["train_bn"])
        if index > 0:
            if index == 1 and names:
                net.save_task_state(0, names)
            add_task_head(net, task)
            with torch.no_grad():
                for layer in net.layers.values():  # make_finetuning_mask: free weights go to the new task
                    layer.owner.masked_fill_(layer.owner == 0, code)
            net.tasks_trained.fill_(code)
            set_trainable(net, index, True, plan["train_biases"], plan["train_bn"])
            net.set_task(index)
            with ctx.phase(f"packnet {task.name}: finetune"):
                ctx.log(f"task {code} ({task.name}): finetune {plan['finetune_epochs']} epochs at lr {plan['lr']:g}")
                self._fit(net, ctx, task, plan, "ft", code)
        else:
            set_trainable(net, 0, True, True, True)  # task 1's own pruning trains its biases and BN (official)
            net.set_task(0)
        if fraction > 0:
            with ctx.phase(f"packnet {task.name}: prune {fraction:g} + retrain") as entry:
                ctx.log(f"task {code} ({task.name}): prune {fraction:.0%} of its weights per layer, retrain")
                with torch.no_grad():
                    seq.pruned[task.name] = {n: prune_layer(lay, code, fraction) for n, lay in net.layers.items()}
                entry["freed"] = sum(s["freed"] for s in seq.pruned[task.name].values())
                self._fit(net, ctx, task, plan, "pp", code)
        if index > 0 and names:
            net.save_task_state(index, names)
        seq.task_done(index)

    def _fit(self, net: PackNetModel, ctx: Any, task: Any, plan: dict[str, Any], phase: str, code: int) -> None:
        recipe = self._recipe(task, plan, phase)
        trainer = ctx.trainer(f"packnet-{code}-{phase}", recipe=recipe, callbacks=[PackNetMasking(net, code)],
                              workload=task.workload)  # fmt: skip
        trainer.fit(net)

    def _summary(self, net: PackNetModel, tasks: list[Any], plan: dict[str, Any], seq: _Sequence,
                 final: list[torch.Tensor], dense: float) -> dict[str, Any]:  # fmt: skip
        names = [t.name for t in tasks]
        bits = _code_bits(len(tasks))
        owned = net.owned()
        numel = {n: lay.owner.numel() for n, lay in net.layers.items()}
        per_task = {n: expected_owned(numel[n], plan["prune_fractions"]) for n in owned}
        expected = {n: [numel[n] - sum(v), *v] for n, v in per_task.items()}
        total = sum(numel.values())
        packed = sum(packed_bytes(n, bits) for n in numel.values())
        share = [packed / len(tasks)] * len(tasks)  # the one owner mask, amortised over the tasks it serves
        storage = storage_report(net, lambda name: name.endswith(".owner"), [round(s) for s in share],
                                 [bits * total / len(tasks)] * len(tasks))  # fmt: skip
        storage["owner_mask"] = {
            "weights": total, "uint8_bytes": total, "packed_bits_per_weight": bits, "packed_bytes": packed,
            "packed_roundtrip_identical": _roundtrip(net, bits),
        }  # fmt: skip
        return {
            "tasks": names,
            "plan": plan,
            "dense_baseline": {"task": names[0], "metric": dense},
            "accuracy": matrix_record(seq.columns, names),
            "zero_forgetting": zero_forgetting(seq.probes, final, names),
            "ownership": {
                "layout": "per layer: [free, task 1, task 2, ...] weight counts",
                "owned": owned,
                "expected": expected,
                "exact": owned == expected,
                "fractions": {n: [c / numel[n] for c in v] for n, v in owned.items()},
                "formula": "task 1: 1 - p1; task t: p1 ... p_{t-1} (1 - p_t); rounding round(p n) per step",
            },
            "pruning": seq.pruned,
            "storage": storage,
            "execution_note": "masked weights run in dense kernels (zeros are not skipped); the saving is storage: "
            f"{len(tasks)} tasks in one network plus a {bits}-bit owner mask per weight",
        }


def _code_bits(tasks: int) -> int:
    """Bits of the packed owner index: ceil(log2(tasks + 1)) (0 = free, 1..T)."""
    return max(1, math.ceil(math.log2(tasks + 1)))


def _roundtrip(net: PackNetModel, bits: int) -> bool:
    """The owner masks stored as ``bits`` packed bit-planes unpack to the same masks."""
    owners = [layer.owner for layer in net.layers.values()]
    return all(torch.equal(unpack_codes(pack_codes(owner, bits), owner.shape), owner) for owner in owners)
