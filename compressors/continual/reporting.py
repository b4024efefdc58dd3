"""The continual part of a run's summary: storage (shared vs per-task bytes, mask bits per task) and latencies
(per task and task switch), filled the same way for PackNet and Piggyback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from compressors.continual.heads import MultiTaskNet
from compressors.continual.masks import masked_layers
from compressors.continual.metrics import switch_latency, task_latency, tensor_bytes

MaskBuffer = Callable[[str], bool]  # is this buffer name (inside a masked layer) a mask?


def shared_bytes(model: MultiTaskNet, is_mask: MaskBuffer) -> int:
    """Bytes of the shared network stored once for every task: weights, biases, BatchNorm; masks excluded."""
    return tensor_bytes(t for name, t in model.shared.state_dict().items() if torch.is_tensor(t) and not is_mask(name))


def masked_weights(model: MultiTaskNet) -> int:
    return sum(layer.layer.weight.numel() for layer in masked_layers(model.shared).values())


def per_task_bytes(model: MultiTaskNet) -> list[int]:
    """Each task's head plus its own copies of shared tensors (biases / BatchNorm when trained per task)."""
    return [
        tensor_bytes(head.state_dict().values()) + tensor_bytes(t for _, t in state.named())  # type: ignore[attr-defined]
        for head, state in zip(model.heads, model.task_states, strict=True)
    ]


def storage_report(model: MultiTaskNet, is_mask: MaskBuffer, mask_bytes: list[int], mask_bits: list[float]) -> dict:
    """``mask_bytes`` / ``mask_bits``: the stored mask of each task (PackNet: its share of the one owner mask)."""
    shared = shared_bytes(model, is_mask)
    heads = per_task_bytes(model)
    total = shared + sum(mask_bytes) + sum(heads)
    separate = len(heads) * shared + sum(heads)
    return {
        "shared_bytes": shared,
        "per_task_bytes": {name: h + m for name, h, m in zip(model.task_names, heads, mask_bytes, strict=True)},
        "head_and_task_tensor_bytes": dict(zip(model.task_names, heads, strict=True)),
        "mask_bytes": dict(zip(model.task_names, mask_bytes, strict=True)),
        "mask_bits_per_task": dict(zip(model.task_names, mask_bits, strict=True)),
        "masked_weights": masked_weights(model),
        "total_bytes": total,
        "separate_networks_bytes": separate,
        "ratio_vs_separate_networks": separate / total,
        "note": "theoretical bytes of the stored tensors (elements x element size; masks bit-packed); the served "
        "copy a task switch materialises is a runtime buffer, not storage",
    }


def latency_report(model: MultiTaskNet, tasks: list[Any], ctx: Any, extra: dict[str, Any] | None = None) -> dict:
    """Per-task SingleStream latency and task-switch latency, eager backend, the run's measure profile."""
    out_dir = Path(ctx.run_dir) / "continual"
    out_dir.mkdir(parents=True, exist_ok=True)
    measure, device = ctx.config.measure, ctx.device
    ctx.log(f"measuring per-task and task-switch latency ({measure} profile, eager, {device})")
    per_task = [task_latency(model, task, measure, device, out_dir, f"task{task.index + 1}") for task in tasks]
    report = {
        "backend": "eager",
        "measure": measure,
        "batch_size": 1,
        "per_task": per_task,
        "task_switch": switch_latency(model, measure, device, out_dir),
        **(extra or {}),
    }
    model.set_task(0)
    return report
