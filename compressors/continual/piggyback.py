"""Piggyback: adapting a single network to multiple tasks by learning to mask weights (Mallya, Davis & Lazebnik,
ECCV'18, arXiv 1801.06519). Behavioural reference: arunmallya/piggyback @5a6094c (``src/modnets/layers.py``,
``main.py``, ``pack.py``, ``scripts/run_piggyback_training.sh``).

Algorithm (paper §3). The backbone (task 1: the dense baseline, the paper's ImageNet network) is frozen. Each added
task t learns a real-valued mask ``m_r`` per conv/linear weight of the shared network (init ``1e-2``, "1s") and a new
head; the forward pass uses ``y = layer(x, m ⊙ W)`` with ``m = 1(m_r > τ)``, ``τ = 5e-3`` (``Binarizer``; ternary
option: ``-1`` where ``m_r < 0``, ``+1`` where ``m_r > τ``, else 0). The backward pass is straight-through: ``∂L/∂m_r =
∂L/∂m = (∂L/∂(m ⊙ W)) ⊙ W`` (eq. 3-4). Masks and head are trained with Adam (``--mask_adam``; lr 1e-4 each, x0.1
every 15 epochs, 30 epochs, batch 32, no weight decay); biases are not trainable and BatchNorm is frozen (eval mode,
grads zeroed) unless ``train_bn`` (then each task keeps its own BatchNorm). Only the binary mask is stored: 1 bit per
weight and task (``pack.py``), plus the head.

Checked in tests and in every run's summary: the backbone's tensors are bit-identical after every task; at step 0
every mask bit is 1 (1e-2 > 5e-3), so the network equals backbone + new head; a task reloaded from the state dict
(backbone + packed masks + heads) reproduces its logits exactly; earlier tasks' logits never change.

Serving. ``serve=packed`` (default): each forward unpacks the task's 1-bit mask into a bool temporary (1 byte per
weight, never a float mask) and runs ``torch.where(mask, W, 0)`` before the dense conv/linear: the stored 1-bit
format is really executed, the compute is dense (no skipped zeros). ``serve=materialized``: a task switch writes
``m ⊙ W`` once into a served copy and inference runs at dense speed. Both latencies are measured beside the dense
backbone.

Tiny profile (CPU minutes): 2 epochs at lr 1e-3 for masks and head (at 1e-4 a mask entry needs ~50 consistent Adam
steps to cross τ, more than a tiny run has), recorded in the summary's ``plan``. Differs from the official code:
the final epoch's masks are kept (the official script keeps the epoch with the best test accuracy); task 1 is the
workload's dense baseline on its own dataset, not an ImageNet network.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compressors.base import CompressedModel, Compressor, CompressorConfig, CompressorInfo
from compressors.continual.controls import run_controls
from compressors.continual.heads import MultiTaskNet, batchnorm_tensor_names
from compressors.continual.masks import (
    Binarizer,
    MaskedLayer,
    Ternarizer,
    masked_layers,
    pack_bits,
    packed_bytes,
    unpack_bits,
    wrap_layers,
)
from compressors.continual.metrics import (
    evaluate_upto,
    matrix_record,
    metric_of,
    probe_logits,
    reload_identical,
    zero_forgetting,
)
from compressors.continual.reporting import latency_report, storage_report
from compressors.continual.training import (
    add_task_head,
    check_image_classifier,
    multitask_from_baseline,
    parse_controls,
    require_tasks,
    step_recipe,
)
from harness.train import Callback, Trainer

PAPER = {"epochs": 30, "lr_mask": 1e-4, "lr_classifier": 1e-4, "lr_decay_every": 15, "batch_size": 32,
         "control_lr": 1e-3}  # fmt: skip
TINY = {"epochs": 2, "lr_mask": 1e-3, "lr_classifier": 1e-3, "lr_decay_every": 15, "batch_size": 0,
        "control_lr": 1e-2}  # fmt: skip
THRESHOLD_FNS = ("binarizer", "ternarizer")
SERVE = ("packed", "materialized")


@dataclass
class PiggybackConfig(CompressorConfig):
    """``0`` means "the profile's default" (the resolved values are recorded in the summary's ``plan``).

    Attributes:
        threshold: τ of the thresholding function (official DEFAULT_THRESHOLD 5e-3).
        mask_init: ``1s`` (every m_r = mask_scale) or ``uniform`` (U(-mask_scale, mask_scale)).
        mask_scale_gradients: ``none``, ``average`` (divide the mask gradient by mean|W|) or ``individual`` (by |W|).
        serve: the result's inference path: ``packed`` (1-bit masks unpacked per forward) or ``materialized``.
        controls: ``separate`` / ``finetune`` controls trained in the same run (SGD at ``control_lr``, momentum 0.9,
            decay every ``lr_decay_every``, ``epochs``, BN trained: the official run_baselines.sh); "" for none.
    """

    version = 1
    threshold: float = 5e-3
    threshold_fn: str = "binarizer"
    mask_init: str = "1s"
    mask_scale: float = 1e-2
    mask_scale_gradients: str = "none"
    lr_mask: float = 0.0
    lr_classifier: float = 0.0
    lr_decay_every: int = 0
    lr_decay_factor: float = 0.1
    epochs: int = 0
    batch_size: int = 0
    train_bn: bool = False
    serve: str = "packed"
    controls: str = "separate,finetune"
    control_lr: float = 0.0
    latency: bool = True

    def __post_init__(self) -> None:
        parse_controls(self.controls)
        choices = {"threshold_fn": THRESHOLD_FNS, "mask_init": ("1s", "uniform"), "serve": SERVE,
                   "mask_scale_gradients": ("none", "average", "individual")}  # fmt: skip
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(valid)}")
        if self.threshold < 0 or self.mask_scale <= 0:
            raise ValueError("threshold must be >= 0 and mask_scale > 0")

    def resolved(self, profile: str) -> dict[str, Any]:
        defaults = PAPER if profile == "paper" else TINY
        plan = {key: getattr(self, key) or default for key, default in defaults.items()}
        fixed = ("threshold", "threshold_fn", "mask_init", "mask_scale", "mask_scale_gradients", "lr_decay_factor",
                 "train_bn", "serve")  # fmt: skip
        return {**plan, **{k: getattr(self, k) for k in fixed}, "profile_defaults": profile}


class PiggybackLayer(MaskedLayer):
    """A frozen conv/linear weight with one packed mask per added task (buffers ``mask<t>``) and, while a task
    trains, its real-valued mask ``mask_real``."""

    def __init__(self, layer: nn.Module, threshold: float, ternary: bool) -> None:
        super().__init__(layer)
        self.threshold, self.ternary = threshold, ternary
        self.register_parameter("mask_real", None)
        self.task = 0
        self.packed_path = True

    def start_task(self, init: str, scale: float) -> None:
        real = torch.full_like(self.layer.weight, scale)
        if init == "uniform":
            real.uniform_(-scale, scale)
        self.mask_real = nn.Parameter(real)

    def thresholded(self) -> torch.Tensor:
        fn = Ternarizer if self.ternary else Binarizer
        return fn.apply(self.mask_real, self.threshold)  # type: ignore[no-untyped-call]

    def finish_task(self, index: int) -> dict[str, Any]:
        """Store the thresholded mask packed (1 bit per weight; ternary: a nonzero and a sign plane)."""
        with torch.no_grad():
            mask = self.thresholded()
        planes = [mask != 0] + ([mask < 0] if self.ternary else [])
        self.register_buffer(f"mask{index}", torch.stack([pack_bits(p) for p in planes]))
        self.mask_real = None
        return {"zeros": int((mask == 0).sum()), "minus_ones": int((mask < 0).sum()), "weights": mask.numel()}

    def packed(self, index: int) -> torch.Tensor | None:
        return self._buffers.get(f"mask{index}")

    def packed_weight(self, planes: torch.Tensor) -> torch.Tensor:
        """``m ⊙ W`` from the packed bits, with bool temporaries only (no float mask is materialised)."""
        weight = self.layer.weight
        keep = unpack_bits(planes[0], weight.shape)
        if self.ternary:
            weight = torch.where(unpack_bits(planes[1], weight.shape), -weight, weight)
        return torch.where(keep, weight, 0.0)

    def serve(self, index: int, packed_path: bool) -> None:
        self.task, self.packed_path = index, packed_path
        planes = self.packed(index)
        self.served = None if planes is None or packed_path else self.packed_weight(planes).detach()

    def forward_weight(self) -> torch.Tensor:
        if self.mask_real is not None:  # training: straight-through thresholded mask
            return self.thresholded() * self.layer.weight
        planes = self.packed(self.task)
        if planes is None:  # task 1: the backbone itself
            return self.layer.weight
        return self.served if self.served is not None else self.packed_weight(planes)


class PiggybackModel(MultiTaskNet):
    """The frozen backbone, a packed mask per added task in every conv/linear, and one head per task."""

    def __init__(self, net: MultiTaskNet, threshold: float, ternary: bool, serve: str) -> None:
        super().__init__(net.shared, list(net.heads), net.task_names, freeze_shared_bn=True)
        wrap_layers(self.shared, lambda layer: PiggybackLayer(layer, threshold, ternary))
        self.packed_path = serve == "packed"

    @property
    def layers(self) -> dict[str, PiggybackLayer]:
        return masked_layers(self.shared)  # type: ignore[return-value]

    def set_task(self, index: int) -> None:
        super().set_task(index)
        with torch.no_grad():
            for layer in self.layers.values():
                layer.serve(index, self.packed_path)

    def use_path(self, packed: bool) -> None:
        self.packed_path = packed
        self.set_task(self.active)

    def backbone_digest(self) -> str:
        """sha256 of every backbone tensor (weights, biases, BatchNorm), masks and heads excluded."""
        digest = hashlib.sha256()
        for name, tensor in sorted(self.shared.state_dict().items()):
            if ".mask" not in name and torch.is_tensor(tensor):
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        return digest.hexdigest()


class MaskGradientScale(Callback):
    """``--mask_scale_gradients average|individual``: divide each mask gradient by mean|W| or |W| (main.py)."""

    def __init__(self, model: PiggybackModel, how: str) -> None:
        self.model, self.how = model, how

    def after_backward(self, trainer: Trainer, model: nn.Module) -> None:
        for layer in self.model.layers.values():
            grad = layer.mask_real.grad if layer.mask_real is not None else None
            if grad is not None:
                scale = layer.layer.weight.abs()
                grad.div_(scale.mean() if self.how == "average" else scale)


def mask_optimizer(model: PiggybackModel, plan: dict[str, Any], head: int) -> Any:
    """Adam on the masks (and BatchNorm when trained) at lr_mask and on the new head at lr_classifier."""

    def factory(_model: nn.Module, recipe: Any) -> torch.optim.Optimizer:
        masks = [lay.mask_real for lay in model.layers.values() if lay.mask_real is not None]
        bn = [p for p in model.shared.parameters() if p.requires_grad and all(p is not m for m in masks)]
        groups = [{"params": masks + bn, "lr": plan["lr_mask"]},
                  {"params": list(model.heads[head].parameters()), "lr": plan["lr_classifier"]}]  # fmt: skip
        return torch.optim.Adam(groups, weight_decay=0.0)

    return factory


class Piggyback(Compressor):
    """Piggyback (arXiv 1801.06519): a learned binary mask per task over a frozen backbone."""

    info = CompressorInfo(
        name="piggyback",
        paper="1801.06519",
        kind="multitask",
        needs_data=True,
        supports=("cnn", "mlp"),
        description="adds tasks to a frozen network: one learned 1-bit mask per weight and task, and a new head",
    )
    Config = PiggybackConfig

    def check_compatible(self, workload: Any) -> None:
        check_image_classifier(self.info, workload)

    def apply(self, model: nn.Module, ctx: Any) -> CompressedModel:
        cfg: PiggybackConfig = self.config  # type: ignore[assignment]
        tasks = require_tasks(ctx, "piggyback")
        plan = cfg.resolved(ctx.workload.profile)
        controls = parse_controls(cfg.controls)
        baseline = copy.deepcopy(model) if controls else None
        dense = metric_of(tasks[0], model, ctx.device)
        net = PiggybackModel(multitask_from_baseline(model, tasks, ctx.device), cfg.threshold,
                             cfg.threshold_fn == "ternarizer", cfg.serve)  # fmt: skip
        bn_names = batchnorm_tensor_names(net.shared) if cfg.train_bn else []
        if bn_names:
            net.save_task_state(0, bn_names)
        digest = net.backbone_digest()
        columns = [evaluate_upto(net, tasks, 0, ctx.device)]
        probes = [probe_logits(net, tasks[0], ctx.device)]
        record: dict[str, Any] = {"backbone_identical_after_task": [], "step0": {}, "mask": {}}
        for task in tasks[1:]:
            self._task(net, ctx, task, plan, record, bn_names)
            with net.serving(0):  # task 1's own BatchNorm is back when it trains BN per task
                record["backbone_identical_after_task"].append(net.backbone_digest() == digest)
            columns.append(evaluate_upto(net, tasks, task.index, ctx.device))
            probes.append(probe_logits(net, task, ctx.device))
        final = [probe_logits(net, task, ctx.device) for task in tasks]
        summary = self._summary(net, tasks, plan, record, columns, probes, final, dense, ctx)
        if cfg.latency:
            summary["latency"] = self._latency(net, tasks, ctx)
        if baseline is not None:
            recipe = lambda t: step_recipe(  # noqa: E731
                t.workload.recipe, "sgd", plan["control_lr"], plan["epochs"], plan["lr_decay_every"],
                plan["lr_decay_factor"], plan["batch_size"], "Piggyback run_baselines.sh (finetune all, SGD)",
            )  # fmt: skip
            summary["controls"] = run_controls(ctx, controls, baseline, tasks, recipe)
        net.set_task(0)
        return CompressedModel(model=net.eval(), execution="executed" if cfg.serve == "packed" else "simulated",
                               summary=summary)  # fmt: skip

    def _task(self, net: PiggybackModel, ctx: Any, task: Any, plan: dict[str, Any], record: dict[str, Any],
              bn_names: list[str]) -> None:  # fmt: skip
        index = add_task_head(net, task)
        net.set_task(index)
        for layer in net.layers.values():
            layer.start_task(plan["mask_init"], plan["mask_scale"])
            layer.layer.weight.requires_grad_(False)
            if layer.layer.bias is not None:
                layer.layer.bias.requires_grad_(False)
        for module in net.shared.modules():
            if not isinstance(module, (MaskedLayer, nn.Conv2d, nn.Linear)):
                for p in module.parameters(recurse=False):
                    p.requires_grad_(plan["train_bn"])
        net.freeze_shared_bn = not plan["train_bn"]
        for i, head in enumerate(net.heads):
            head.requires_grad_(i == index)
        record["step0"][task.name] = self._step0(net, task, ctx.device)
        recipe = step_recipe(
            task.workload.recipe, "adam", plan["lr_mask"], plan["epochs"], plan["lr_decay_every"],
            plan["lr_decay_factor"], plan["batch_size"], "Piggyback run_piggyback_training.sh",
        )  # fmt: skip
        callbacks = (
            [MaskGradientScale(net, plan["mask_scale_gradients"])] if plan["mask_scale_gradients"] != "none" else []
        )
        with ctx.phase(f"piggyback {task.name}: masks + head") as entry:
            ctx.log(f"task {index + 1} ({task.name}): {plan['epochs']} epochs, Adam lr {plan['lr_mask']:g} on masks")
            trainer = ctx.trainer(f"piggyback-{index + 1}", recipe=recipe, callbacks=callbacks, workload=task.workload,
                                  optimizer_factory=mask_optimizer(net, plan, index))  # fmt: skip
            trainer.fit(net)
            stats = {name: layer.finish_task(index) for name, layer in net.layers.items()}
            zeros, total = sum(s["zeros"] for s in stats.values()), sum(s["weights"] for s in stats.values())
            record["mask"][task.name] = {"zeroed_fraction": zeros / total, "per_layer": stats}
            entry["zeroed_fraction"] = zeros / total
        if bn_names:
            net.save_task_state(index, bn_names)
        net.set_task(index)

    def _step0(self, net: PiggybackModel, task: Any, device: str) -> dict[str, Any]:
        """Before training: every mask bit is 1, and the masked network's logits equal backbone + new head's."""
        ones = all(bool((lay.mask_real > lay.threshold).all()) for lay in net.layers.values())  # type: ignore[operator]
        masked = probe_logits(net, task, device)
        saved = {name: layer.mask_real for name, layer in net.layers.items()}
        for layer in net.layers.values():
            layer.mask_real = None
        plain = probe_logits(net, task, device)
        for name, layer in net.layers.items():
            layer.mask_real = saved[name]
        return {"all_mask_bits_one": ones, "logits_equal_backbone_plus_head": bool(torch.equal(masked, plain))}

    def _summary(self, net: PiggybackModel, tasks: list[Any], plan: dict[str, Any], record: dict[str, Any],
                 columns: list[list[float]], probes: list[torch.Tensor], final: list[torch.Tensor], dense: float,
                 ctx: Any) -> dict[str, Any]:  # fmt: skip
        names = [t.name for t in tasks]
        bits = 2 if plan["threshold_fn"] == "ternarizer" else 1
        numels = [lay.layer.weight.numel() for lay in net.layers.values()]
        mask_bytes = [0] + [sum(packed_bytes(n, bits) for n in numels)] * (len(tasks) - 1)
        stored = [0] + [sum(net.layers[n].packed(t.index).numel() for n in net.layers) for t in tasks[1:]]  # type: ignore[union-attr]
        storage = storage_report(
            net, lambda name: ".mask" in name, mask_bytes, [0.0] + [bits * sum(numels)] * (len(tasks) - 1)
        )
        storage["packed_mask_bytes_in_model"] = dict(zip(names, stored, strict=True))
        storage["mask_bits_per_weight_per_task"] = bits
        return {
            "tasks": names,
            "plan": plan,
            "dense_baseline": {"task": names[0], "metric": dense},
            "accuracy": matrix_record(columns, names),
            "zero_forgetting": zero_forgetting(probes, final, names),
            "frozen_backbone": {
                "identical_after_each_task": record["backbone_identical_after_task"],
                "how": "sha256 of every backbone tensor before and after each task",
            },  # fmt: skip
            "step0": record["step0"],
            "masks": record["mask"],
            "reload": reload_identical(net, tasks, ctx.device),
            "storage": storage,
            "packed_inference": {
                "label": "executed",
                "what": "the 1-bit masks are what is stored and what the serve=packed forward reads: unpacked into a "
                "bool temporary (1 byte per weight, no float mask), torch.where(mask, W, 0), then the dense "
                "conv/linear kernel; no compute is saved (zeros are not skipped)",
            },
        }

    def _latency(self, net: PiggybackModel, tasks: list[Any], ctx: Any) -> dict[str, Any]:
        """Per task through both serving paths, and the switch latency of each; task 1 is the dense backbone."""
        before = net.packed_path
        net.use_path(True)
        packed = latency_report(net, tasks, ctx)
        net.use_path(False)
        materialized = latency_report(net, tasks, ctx)
        net.use_path(before)
        return {"dense_backbone": packed["per_task"][0], "packed": packed, "materialized": materialized}
