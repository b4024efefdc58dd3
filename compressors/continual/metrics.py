"""Continual-learning figures: the accuracy matrix, forgetting, zero-forgetting probes, storage and latencies.

* Accuracy matrix ``A[i][s]``: the metric of task ``i`` after task ``s`` was added (``None`` for ``s < i``); each
  column is measured once the task's own training (and, for PackNet, its pruning) is over.
* Forgetting of task ``i``: ``max_{i <= s < T-1} A[i][s] - A[i][T-1]`` (the best accuracy it had before the last task
  minus its final one; Chaudhry et al.'s definition), ``None`` for the last task.
* Zero-forgetting probe: the logits of each task on 8 fixed validation inputs right after the task was trained, and
  again at the end; PackNet and Piggyback claim they are bit-identical (compared with ``torch.equal``).
* Latencies are measured with the harness's SingleStream meter (:func:`harness.meters.latency.measure_latency`, the
  run's measure profile) through the eager backend; a task switch is timed as one call of ``set_task``.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.backends import BACKENDS
from harness.meters.latency import MEASURE_PROFILES, measure_latency
from harness.meters.stats import summarize

PROBE_BATCH = 8
LATENCY_POOL = 64  # distinct real inputs cycled while timing (METHODOLOGY §0)


def metric_of(task: Any, model: nn.Module, device: str) -> float:
    workload = task.workload
    return float(workload.evaluate(model, workload.dataloader("val", shuffle=False), device)[workload.info.metric])


def evaluate_upto(model: Any, tasks: list[Any], upto: int, device: str) -> list[float]:
    """The metric of tasks 0..upto, each served with its own head (and mask) in turn."""
    values = []
    for task in tasks[: upto + 1]:
        with model.serving(task.index):
            values.append(metric_of(task, model, device))
    return values


def matrix_record(columns: list[list[float]], names: list[str]) -> dict[str, Any]:
    """The accuracy matrix (rows: tasks, columns: after task s), forgetting per task and the final average."""
    count = len(columns)
    matrix = [[columns[s][i] if i <= s else None for s in range(count)] for i in range(count)]
    forgetting: list[float | None] = []
    for i in range(count):
        earlier = [v for v in matrix[i][i : count - 1] if v is not None]
        forgetting.append(max(earlier) - matrix[i][-1] if earlier else None)  # type: ignore[operator]
    final = [row[-1] for row in matrix]
    measured = [f for f in forgetting if f is not None]
    return {
        "tasks": names,
        "matrix": matrix,
        "layout": "matrix[i][s] = metric of task i after task s was added (None before task i exists)",
        "forgetting": forgetting,
        "final": final,
        "final_mean": sum(final) / count,  # type: ignore[arg-type]
        "mean_forgetting": sum(measured) / len(measured) if measured else None,
    }


# ---- zero forgetting ------------------------------------------------------------------------------------------------
def probe_logits(model: Any, task: Any, device: str) -> torch.Tensor:
    inputs = task.workload.example_inputs(PROBE_BATCH, device)
    with model.serving(task.index), torch.no_grad():
        return model(*inputs).detach().cpu()


def fingerprint(logits: torch.Tensor) -> str:
    return hashlib.sha256(logits.float().contiguous().numpy().tobytes()).hexdigest()


def zero_forgetting(after_own: list[torch.Tensor], final: list[torch.Tensor], names: list[str]) -> dict[str, Any]:
    """Per task: are its final logits bit-identical to those right after its own training?"""
    rows = []
    for name, before, after in zip(names, after_own, final, strict=True):
        rows.append(
            {
                "task": name,
                "bit_identical": bool(torch.equal(before, after)),
                "max_abs_logit_change": float((before - after).abs().max()),
                "logits_sha256_after_own_training": fingerprint(before),
                "logits_sha256_final": fingerprint(after),
            }
        )
    return {"probe": f"logits on the first {PROBE_BATCH} validation inputs of each task", "tasks": rows}


def reload_identical(model: Any, tasks: list[Any], device: str) -> dict[str, Any]:
    """Does the state dict alone (what is stored) determine every task? A copy with every stored tensor zeroed,
    loaded from ``model.state_dict()``, must give bit-identical logits on each task's probe inputs."""
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in clone.state_dict().values():
            if torch.is_tensor(tensor):
                tensor.zero_()
    clone.load_state_dict(model.state_dict())
    same = {
        task.name: bool(torch.equal(probe_logits(model, task, device), probe_logits(clone, task, device)))
        for task in tasks
    }
    del clone
    return {"what": "state dict -> zeroed copy -> logits per task", "identical": all(same.values()), "tasks": same}


# ---- storage --------------------------------------------------------------------------------------------------------
def tensor_bytes(tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def module_bytes(module: nn.Module) -> int:
    """Bytes of everything ``module`` stores (its state dict: parameters and persistent buffers)."""
    return tensor_bytes(t for t in module.state_dict().values() if torch.is_tensor(t))


def separate_models_bytes(shared_dense_bytes: int, head_bytes: list[int]) -> int:
    """One full network per task: the dense shared network once per task plus each task's head."""
    return len(head_bytes) * shared_dense_bytes + sum(head_bytes)


# ---- latency --------------------------------------------------------------------------------------------------------
def _settings(measure: str) -> Any:
    return MEASURE_PROFILES[measure]


def task_latency(model: Any, task: Any, measure: str, device: str, out: Path | None, label: str) -> dict[str, Any]:
    """SingleStream latency of ``model`` serving ``task`` (batch 1, 64 distinct real inputs), eager backend."""
    model.set_task(task.index)
    runnable = BACKENDS.get("eager")().prepare(model, task.workload.example_inputs(1, device), device)
    pool = [task.workload.example_inputs(1, device, offset=i) for i in range(LATENCY_POOL)]
    path = out / f"latency-{label}.txt" if out is not None else None
    result = measure_latency(runnable, pool, _settings(measure), device, samples_path=path)
    return {"task": task.name, "p50_ms": result["host_latency"]["p50"], "host_latency": result["host_latency"],
            "flags": result["flags"]}  # fmt: skip


def switch_latency(model: Any, measure: str, device: str, out: Path | None) -> dict[str, Any]:
    """Time of ``set_task`` cycling through every task (task 1 -> 2 -> ... -> T -> 1), each call a real switch;
    also per target task (the switch into ``j`` from ``j - 1``), split from the raw samples."""
    order = list(range(model.num_tasks))
    state = {"i": 0}

    def switch() -> None:
        state["i"] += 1
        with torch.no_grad():
            model.set_task(order[state["i"] % len(order)])
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    model.eval()
    model.set_task(order[0])
    path = out / "latency-task-switch.txt" if out is not None else None
    result = measure_latency(switch, [()], _settings(measure), device, samples_path=path)
    per_target: dict[str, Any] = {}
    if path is not None:
        samples = [float(v) for v in path.read_text().split()]
        first = result["warmup_calls"] + 1  # the target of the first timed call
        for j in order:
            mine = [s for k, s in enumerate(samples) if (first + k) % len(order) == j]
            per_target[model.task_names[j]] = summarize(mine)["p50"] if mine else None
    model.set_task(order[0])
    return {
        "what": "set_task(j) after serving j-1: materialise task j's weights from the stored masks (if its mask "
        "differs) and swap the head and per-task tensors",
        "p50_ms": result["host_latency"]["p50"],
        "host_latency": result["host_latency"],
        "p50_ms_by_target": per_target,
        "flags": result["flags"],
    }
