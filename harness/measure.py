"""Measure one model: accuracy, FLOPs (dense, effective, BOPs), size, memory, roofline, and per backend the output
agreement with eager, SingleStream latency, the Offline batch sweep and energy (METHODOLOGY §0-8).

Each backend is checked against eager outputs before it is timed. A backend that cannot run here is ``skipped`` with
its reason; one that fails while preparing or measuring (an export error, a recompile inside the timed region) is
``failed`` with the error, and the other backends are still measured. The Offline sweep stops at the first batch
size that runs out of GPU memory and records it; the largest batch that fit is the Offline headline.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.backends import BACKENDS, Backend, BackendUnavailable
from harness.calibrate import calibrate
from harness.meters.accounting import (
    bops,
    effective_flops,
    roofline,
    stored_weight_bytes,
    tensor_bytes,
    theoretical_size,
)
from harness.meters.energy_run import inference_energy
from harness.meters.flops import count_flops
from harness.meters.latency import MEASURE_PROFILES, MeasureSettings, measure_latency, measure_throughput
from harness.meters.memory import peak_memory
from harness.meters.processes import measure_in_processes
from harness.meters.size import parameter_stats, state_dict_bytes
from workloads.base import Workload

INPUT_POOL = 64  # distinct real samples cycled while timing (METHODOLOGY §0)


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
    result["accounting"] = _accounting(model, result["flops"], weight_bits or {})
    result["flops"]["effective_flops"] = result["accounting"]["effective"]["effective_flops"]
    result["size"] = parameter_stats(model, weight_bits)
    result["size"]["state_dict_bytes"] = state_dict_bytes(model)
    result["size"]["theoretical"] = theoretical_size(model, weight_bits)
    largest = max(settings.batch_sizes)
    result["memory"] = peak_memory(lambda: _forward(model, workload.example_inputs(largest, device)), device)
    result["roofline"] = _roofline(model, workload, result["flops"]["flops"], settings, device)
    reference = _reference_outputs(model, workload, device)
    axes = batch_axes(workload)
    result["backends"] = {
        name: _measure_backend(name, model, workload, settings, measure, device, out_dir, reference, axes)
        for name in backends
    }
    result["size"]["artifacts"] = _artifacts(result)
    return result


def _forward(model: nn.Module, inputs: tuple[Any, ...]) -> Any:
    with torch.inference_mode():
        return model(*inputs)


def _first_tensor(out: Any) -> torch.Tensor:
    if hasattr(out, "logits"):
        out = out.logits
    if isinstance(out, (list, tuple)):
        out = out[0]
    return out


def _reference_outputs(model: nn.Module, workload: Workload, device: str) -> tuple[tuple[Any, ...], torch.Tensor]:
    inputs = workload.example_inputs(8, device)
    return inputs, _first_tensor(_forward(model, inputs)).detach().float().cpu()


def _agreement(runnable: Any, reference: tuple[tuple[Any, ...], torch.Tensor]) -> dict[str, float]:
    inputs, expected = reference
    got = runnable.outputs(*inputs)
    diff = (got - expected).abs()
    scale = expected.abs().max().clamp_min(1e-12)
    return {"max_abs_error": float(diff.max()), "max_rel_error": float(diff.max() / scale)}


def batch_axes(workload: Workload) -> list[int]:
    """The batch dimension of each input: where the batch-1 and batch-2 example inputs differ (0 if none does)."""
    one, two = workload.example_inputs(1), workload.example_inputs(2)
    axes = []
    for a, b in zip(one, two, strict=True):
        differing = [i for i, (x, y) in enumerate(zip(a.shape, b.shape, strict=False)) if x != y]
        axes.append(differing[0] if differing else 0)
    return axes


def _accounting(model: nn.Module, flops: dict[str, Any], weight_bits: dict[str, float]) -> dict[str, Any]:
    leaf = flops["per_leaf_module"]
    return {"effective": effective_flops(model, flops["flops"], leaf), "bops": bops(leaf, weight_bits)}


def _roofline(
    model: nn.Module, workload: Workload, flops_bs1: int, settings: MeasureSettings, device: str
) -> dict[str, Any]:
    """Roofline bound per batch size with this machine's measured peaks (FLOPs scale with the batch, weights don't)."""
    peaks = calibrate(device)
    weights = stored_weight_bytes(model)
    inputs = workload.example_inputs(1, device)
    io_bytes = tensor_bytes(inputs) + tensor_bytes([_first_tensor(_forward(model, inputs))])
    by_batch = {str(b): roofline(flops_bs1 * b, weights + io_bytes * b, peaks) for b in settings.batch_sizes}
    return {"calibration": peaks, "weight_bytes": weights, "io_bytes_per_sample": io_bytes, "by_batch": by_batch}


def make_backend(name: str, axes: list[int]) -> Backend:
    """An instance of the registered backend ``name``, told the batch axis of each input when it takes them."""
    cls = BACKENDS.get(name)
    params = inspect.signature(cls).parameters
    return cls(batch_axes=axes) if "batch_axes" in params else cls()


def _measure_backend(
    name: str,
    model: nn.Module,
    workload: Workload,
    settings: MeasureSettings,
    measure: str,
    device: str,
    out_dir: Path,
    reference: tuple[tuple[Any, ...], torch.Tensor],
    axes: list[int],
) -> dict[str, Any]:
    try:
        backend = make_backend(name, axes)
        backend.check_available(device)
        runnable = backend.prepare(copy.deepcopy(model), workload.example_inputs(1, device), device)
    except BackendUnavailable as exc:
        return {"status": "skipped", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - recorded; the other backends are still measured
        return {"status": "failed", "stage": "prepare", "error": f"{type(exc).__name__}: {exc}"}
    entry: dict[str, Any] = {"status": "ok", "info": runnable.info}
    try:
        entry["agreement"] = _agreement(runnable, reference)
        pool = [workload.example_inputs(1, device, offset=i) for i in range(INPUT_POOL)]
        single = measure_latency(runnable, pool, settings, device, samples_path=out_dir / f"latency-{name}-bs1.txt")
        # MLPerf SingleStream headline: p90 (None below LoadGen's 64-sample minimum).
        headline = single["host_latency"]["p90"]
        entry["single_stream"] = {"scenario": "SingleStream", "headline_p90_ms": headline, **single}
        if settings.processes > 1:
            entry["single_stream"].update(
                measure_in_processes(single, model, name, axes, pool, settings, device, out_dir)
            )
        entry["offline"] = _offline(runnable, workload, settings, device)
        entry["energy"] = _energy(runnable, workload, pool, entry["offline"], measure, device)
    except Exception as exc:  # noqa: BLE001
        return {"status": "failed", "stage": "measure", "info": runnable.info, "error": f"{type(exc).__name__}: {exc}"}
    return entry


def _is_oom(exc: BaseException, device: str) -> bool:
    if not device.startswith("cuda"):
        return False
    text = str(exc).lower()
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text or "failed to allocate" in text


def _batch_pool(workload: Workload, batch_size: int, device: str) -> list[tuple[Any, ...]]:
    """Distinct batches covering >= 64 samples (at least 2 batches, at most 8)."""
    count = min(8, max(2, math.ceil(INPUT_POOL / batch_size)))
    return [workload.example_inputs(batch_size, device, offset=i * batch_size) for i in range(count)]


def _offline(runnable: Any, workload: Workload, settings: MeasureSettings, device: str) -> dict[str, Any]:
    """Offline batch sweep; on CUDA the first out-of-memory batch ends it (METHODOLOGY §2)."""
    points, stopped = until_out_of_memory(
        settings.batch_sizes,
        lambda bs: measure_throughput(runnable, _batch_pool(workload, bs, device), bs, settings, device),
        device,
    )
    sweep: list[dict[str, Any]] = list(points.values())
    if not sweep:
        raise RuntimeError(f"no batch size fits on {device}: {stopped}")
    return {
        "scenario": "Offline",
        "sweep": sweep,
        "batch_1_samples_per_s": sweep[0]["samples_per_s"] if sweep[0]["batch_size"] == 1 else None,
        "largest_batch": sweep[-1]["batch_size"],
        "largest_batch_samples_per_s": sweep[-1]["samples_per_s"],
        "best_samples_per_s": max(p["samples_per_s"] for p in sweep),
        "stopped": stopped,
    }


def _energy(
    runnable: Any, workload: Workload, pool: list[tuple[Any, ...]], offline: dict[str, Any], measure: str, device: str
) -> dict[str, Any]:
    """SingleStream (batch 1, each query completes before the next: mJ/query) and Offline at the largest batch
    that fit (W and samples/s/W)."""
    state = {"i": 0}

    def single() -> int:
        runnable(*pool[state["i"] % len(pool)])
        runnable.synchronize()
        state["i"] += 1
        return 1

    batch = offline["largest_batch"]
    batches = _batch_pool(workload, batch, device)

    def offline_step() -> int:
        runnable(*batches[state["i"] % len(batches)])
        state["i"] += 1
        return batch

    return {
        "single_stream": inference_energy(single, device, measure, runnable.synchronize),
        "offline": {"batch_size": batch, **inference_energy(offline_step, device, measure, runnable.synchronize)},
    }


def _artifacts(result: dict[str, Any]) -> dict[str, Any]:
    """Artifact bytes: state_dict file, and the ONNX file / TensorRT engine of the backends that made one (§6)."""
    artifacts: dict[str, Any] = {"state_dict_bytes": result["size"]["state_dict_bytes"]}
    for name, entry in result["backends"].items():
        info = entry.get("info") or {}
        for key in ("onnx_bytes", "engine_bytes"):
            if key in info:
                artifacts[f"{name}.{key}"] = info[key]
    return artifacts


def compare_interleaved(
    dense: nn.Module, compressed: nn.Module, workload: Workload, backends: list[str], measure: str, device: str
) -> dict[str, Any]:
    """Speedup of ``compressed`` over ``dense`` per backend, at batch 1 and at each Offline batch size, timed
    interleaved (dense, dense again, compressed) in one loop with the A/A rule of METHODOLOGY §9 (see
    :func:`harness.speedup.interleaved_comparison`). On CUDA the first batch size that runs out of memory ends the
    sweep and is recorded as ``stopped``."""
    settings = MEASURE_PROFILES[measure]
    axes = batch_axes(workload)
    out: dict[str, Any] = {}
    for name in backends:
        try:
            backend = make_backend(name, axes)
            backend.check_available(device)
            backend.share_machine()
            example = workload.example_inputs(1, device)
            a, a_copy, b = (
                backend.prepare(copy.deepcopy(m).to(device).eval(), example, device) for m in (dense, dense, compressed)
            )
            out[name] = {"status": "ok", **_interleaved_sweep(a, a_copy, b, workload, settings, device)}
        except BackendUnavailable as exc:
            out[name] = {"status": "skipped", "reason": str(exc)}
        except Exception as exc:  # noqa: BLE001 - recorded per backend
            out[name] = {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    return out


def interleaved_settings(settings: MeasureSettings, batch_size: int) -> MeasureSettings:
    """The profile's time minimum, and a call count that covers ``min_count`` samples (at least 20 calls)."""
    return replace(settings, min_count=max(20, math.ceil(settings.min_count / batch_size)))


def _interleaved_sweep(
    a: Any, a_copy: Any, b: Any, workload: Workload, settings: MeasureSettings, device: str
) -> dict[str, Any]:
    from harness.speedup import interleaved_comparison

    def compare_at(batch_size: int) -> dict[str, Any]:
        if batch_size == 1:
            pool = [workload.example_inputs(1, device, offset=i) for i in range(INPUT_POOL)]
        else:
            pool = _batch_pool(workload, batch_size, device)
        return interleaved_comparison(a, b, pool, interleaved_settings(settings, batch_size), device, dense_copy=a_copy)

    points, stopped = until_out_of_memory(settings.batch_sizes, compare_at, device)
    return {"by_batch": {str(bs): point for bs, point in points.items()}, "stopped": stopped}


def until_out_of_memory(
    batch_sizes: Sequence[int], measure_at: Callable[[int], Any], device: str
) -> tuple[dict[int, Any], dict[str, Any] | None]:
    """``measure_at(bs)`` for each batch size in turn; on CUDA the first out-of-memory one ends the sweep and is
    returned as ``stopped`` (any other error is raised)."""
    points: dict[int, Any] = {}
    for batch_size in batch_sizes:
        try:
            points[batch_size] = measure_at(batch_size)
        except Exception as exc:
            if not _is_oom(exc, device):
                raise
            torch.cuda.empty_cache()
            return points, {"batch_size": batch_size, "reason": f"out of memory: {str(exc)[:200]}"}
    return points, None
