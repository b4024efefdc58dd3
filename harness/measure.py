"""Measure one model: accuracy, FLOPs, size, memory, and latency/throughput on each requested backend."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.backends import BACKENDS, BackendUnavailable
from harness.meters.flops import count_flops
from harness.meters.latency import MEASURE_PROFILES, MeasureSettings, measure_latency, measure_throughput
from harness.meters.memory import peak_memory
from harness.meters.size import parameter_stats, state_dict_bytes
from workloads.base import Workload

INPUT_POOL = 64  # distinct real input batches cycled while timing (METHODOLOGY §0)


def measure_model(
    model: nn.Module,
    workload: Workload,
    backends: list[str],
    measure: str,
    device: str,
    out_dir: Path,
    weight_bits: dict[str, float] | None = None,
) -> dict[str, Any]:
    """All meters on one model; results are plain dicts for the run record."""
    settings = MEASURE_PROFILES[measure]
    model = model.to(device).eval()
    result: dict[str, Any] = {"accuracy": workload.evaluate(model, workload.dataloader("val", shuffle=False), device)}
    result["flops"] = count_flops(model, workload.example_inputs(1, device))
    result["size"] = parameter_stats(model, weight_bits)
    result["size"]["state_dict_bytes"] = state_dict_bytes(model)
    result["memory"] = peak_memory(lambda: _forward(model, workload.example_inputs(max(settings.batch_sizes), device)), device)
    reference = _reference_outputs(model, workload, device)
    result["backends"] = {
        name: _measure_backend(name, model, workload, settings, device, out_dir, reference) for name in backends
    }
    return result


def _forward(model: nn.Module, inputs: tuple[Any, ...]) -> Any:
    with torch.inference_mode():
        return model(*inputs)


def _reference_outputs(model: nn.Module, workload: Workload, device: str) -> tuple[tuple[Any, ...], torch.Tensor]:
    inputs = workload.example_inputs(8, device)
    out = _forward(model, inputs)
    if hasattr(out, "logits"):
        out = out.logits
    if isinstance(out, (list, tuple)):
        out = out[0]
    return inputs, out.detach().float().cpu()


def _agreement(runnable: Any, reference: tuple[tuple[Any, ...], torch.Tensor]) -> dict[str, float]:
    inputs, expected = reference
    got = runnable.outputs(*inputs)
    diff = (got - expected).abs()
    scale = expected.abs().max().clamp_min(1e-12)
    return {"max_abs_error": float(diff.max()), "max_rel_error": float(diff.max() / scale)}


def _measure_backend(
    name: str,
    model: nn.Module,
    workload: Workload,
    settings: MeasureSettings,
    device: str,
    out_dir: Path,
    reference: tuple[tuple[Any, ...], torch.Tensor],
) -> dict[str, Any]:
    backend = BACKENDS.get(name)()
    try:
        backend.check_available(device)
        runnable = backend.prepare(copy.deepcopy(model), workload.example_inputs(1, device), device)
    except BackendUnavailable as exc:
        return {"status": "skipped", "reason": str(exc)}
    entry: dict[str, Any] = {"status": "ok", "info": runnable.info, "agreement": _agreement(runnable, reference)}
    pool = [workload.example_inputs(1, device, offset=i) for i in range(INPUT_POOL)]
    entry["single_stream"] = measure_latency(
        runnable, pool, settings, device, samples_path=out_dir / f"latency-{name}-bs1.txt"
    )
    sweep = []
    for batch_size in settings.batch_sizes:
        batch_pool = [workload.example_inputs(batch_size, device, offset=i) for i in range(min(INPUT_POOL, 8))]
        point = measure_throughput(runnable, batch_pool, batch_size, settings, device)
        point["latency_ms"] = 1000.0 * point["wall_s"] / point["calls"]
        sweep.append(point)
    entry["offline"] = {"sweep": sweep, "best_samples_per_s": max(p["samples_per_s"] for p in sweep)}
    return entry
