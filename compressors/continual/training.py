"""Training pieces shared by PackNet, Piggyback and their controls: the phase recipes, which tensors a phase
trains, the multi-task model built from the dense baseline, and the sequence checks."""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from compressors.base import IncompatibleWorkloadError
from compressors.continual.heads import BATCHNORMS, MultiTaskNet, new_head, split_head
from compressors.continual.masks import MaskedLayer
from workloads.base import Recipe


def step_recipe(base: Recipe, optimizer: str, lr: float, epochs: int, decay_every: int, factor: float,
                batch_size: int, source: str) -> Recipe:  # fmt: skip
    """The official schedule ``lr = base * factor ** floor((epoch - 1) / every)`` (utils.step_lr) is StepLR; weight
    decay 0 (main.py ``--weight_decay 0.0``), no clipping or smoothing; data limits and image size of the task."""
    return base.replace(
        optimizer=optimizer, lr=lr, momentum=0.9, weight_decay=0.0, schedule="step", step_size=max(decay_every, 1),
        gamma=factor, epochs=max(epochs, 1), batch_size=batch_size or base.batch_size, grad_clip=None,
        label_smoothing=0.0, source=source,
    )  # fmt: skip


def multitask_from_baseline(model: nn.Module, tasks: list[Any], device: str) -> MultiTaskNet:
    """The dense baseline as task 1 of a :class:`MultiTaskNet` (its head cut off, logits unchanged)."""
    first = tasks[0].workload
    example = first.example_inputs(2, device)
    shared, head = split_head(model.to(device), first.num_classes, example[0])
    return MultiTaskNet(shared, [head], [tasks[0].name])


def add_task_head(model: MultiTaskNet, task: Any) -> int:
    index = model.add_task(new_head(model.heads[0], task.workload.num_classes), task.name)
    if index != task.index:
        raise RuntimeError(f"task {task.name!r} got head {index}, expected {task.index}")
    return index


def set_trainable(model: MultiTaskNet, task: int, weights: bool, biases: bool, batchnorm: bool) -> None:
    """``requires_grad`` for one phase: the masked layers' weights and biases, BatchNorm (kept in eval mode when
    frozen, the official ``train_nobn``), any other shared tensor (frozen), and only task ``task``'s head."""
    model.freeze_shared_bn = not batchnorm
    for module in model.shared.modules():
        if isinstance(module, MaskedLayer):
            module.layer.weight.requires_grad_(weights)
            if module.layer.bias is not None:
                module.layer.bias.requires_grad_(biases)
        elif isinstance(module, BATCHNORMS):
            for p in module.parameters(recurse=False):
                p.requires_grad_(batchnorm)
        elif not isinstance(module, (nn.Conv2d, nn.Linear)):
            for p in module.parameters(recurse=False):
                p.requires_grad_(False)
    for index, head in enumerate(model.heads):
        for p in head.parameters():
            p.requires_grad_(index == task)


def per_task_names(model: MultiTaskNet, biases: bool, batchnorm: bool) -> list[str]:
    """State-dict names (relative to ``shared``) of the shared tensors that each task keeps its own copy of."""
    names = []
    for prefix, module in model.shared.named_modules():
        if biases and isinstance(module, MaskedLayer) and module.layer.bias is not None:
            names.append(f"{prefix}.layer.bias")
        if batchnorm and isinstance(module, BATCHNORMS):
            names += [f"{prefix}.{n}" for n in module.state_dict()]
    return names


def check_image_classifier(info: Any, workload: Any) -> None:
    """Multi-task compressors need a CNN/MLP image classifier whose head can be swapped per task."""
    from workloads.vision import ImageClassificationWorkload

    if workload.info.kind not in info.supports or not isinstance(workload, ImageClassificationWorkload):
        raise IncompatibleWorkloadError(
            f"Compressor {info.name!r} adds image-classification tasks to a CNN or MLP; workload "
            f"{workload.info.name!r} is {workload.info.kind} ({workload.info.task}). Use e.g. vgg16_bn, resnet50, "
            f"lenet3 or mlp (see 'python -m harness ls workloads')."
        )


def require_tasks(ctx: Any, name: str) -> list[Any]:
    if len(ctx.tasks) < 2:
        raise ValueError(f"{name} needs a task sequence of at least 2 tasks in ctx.tasks (--tasks), got {ctx.tasks}")
    return list(ctx.tasks)


def dense_copy(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def parse_controls(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = sorted(set(names) - {"separate", "finetune"})
    if unknown:
        raise ValueError(f"controls: unknown {unknown}; use 'separate', 'finetune', both (comma-separated) or ''")
    return names
