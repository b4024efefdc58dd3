"""Thinned vs dense ResNet-50 (45 % of FLOPs removed, :mod:`.thinned`): interleaved speedup against the ideal.

For each backend (eager, then torch.compile) and batch size (256 first, the target's, then 32 and 1), dense, dense
again and thinned are timed in turn in one loop (:func:`harness.speedup.interleaved_comparison`, METHODOLOGY §9);
achieved = ratio of median host latencies (synchronized), ideal = dense FLOPs / thinned FLOPs, efficiency =
achieved / ideal (§8). Compile: :class:`harness.backends.compile.CompileBackend` with ``dynamic=False`` (one static
graph per model and batch); preparing the second model resets dynamo, so both are called once before timing, and the
timed loop runs inside both runnables' ``timed_region`` (a recompile there fails the point). Each point is recorded
as soon as it is measured; a compile point that would not fit in the time left is recorded as not run.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from typing import Any

from harness.doctor.record import StepContext, StepSkipped

BATCHES = (256, 32, 1)
BACKENDS = ("eager", "compile")
COMPILE_POINT_S = 90.0  # two cold compiles of ResNet-50, cache-hit recompiles, the timing (estimate, not measured)


def settings() -> Any:
    from harness.meters.latency import MeasureSettings

    return MeasureSettings(min_time_s=2.0, min_count=20, warmup_s=0.5, warmup_count=5)


def input_pool(workload: Any, batch: int, device: str) -> list[tuple[Any, ...]]:
    """>= 64 distinct real samples (at least 2 batches)."""
    count = max(2, math.ceil(64 / batch)) if batch > 1 else 64
    return [workload.example_inputs(batch, device, offset=i) for i in range(count)]


def _runnables(backend: str, models: dict[str, Any], example: tuple[Any, ...], device: str) -> list[Any]:
    """[dense, dense copy, thinned] prepared by ``backend``; each called once after all are prepared (every prepare
    resets dynamo, so the earlier graphs recompile here, from inductor's cache, outside the timed loop)."""
    from harness.backends.compile import CompileBackend
    from harness.backends.eager import EagerBackend

    maker = CompileBackend(dynamic=False) if backend == "compile" else EagerBackend()
    runnables = [maker.prepare(models[key], example, device) for key in ("dense", "dense_copy", "thinned")]
    for runnable in runnables:
        runnable(*example)
    runnables[0].synchronize()
    return runnables


def measure_point(backend: str, models: dict[str, Any], workload: Any, batch: int, device: str) -> dict[str, Any]:
    """One (backend, batch) comparison; the models are the eval-mode dense and thinned modules on ``device``."""
    from harness.doctor.interleave import compare

    pool = input_pool(workload, batch, device)
    a, a_copy, b = _runnables(backend, models, pool[0], device)
    with contextlib.ExitStack() as stack:
        for runnable in (a, a_copy, b):
            region = getattr(runnable, "timed_region", None)
            if callable(region):
                stack.enter_context(region())
        result = compare(a, a_copy, b, pool, settings(), device)
    ideal = models["ideal"]
    info = {k: v for k, v in (a.info or {}).items() if k in ("compile_time_s", "mode", "dynamic", "compiler_backend")}
    return {**result, "achieved": result["ratio"], "ideal": ideal, "efficiency": result["ratio"] / ideal,
            "batch_size": batch, "backend": backend, "dense_info": info,
            "thinned_compile_time_s": (b.info or {}).get("compile_time_s")}  # fmt: skip


def run(ctx: StepContext) -> None:
    import torch

    from harness.doctor.thinned import resnet50_pair

    if ctx.device != "cuda":
        raise StepSkipped("a GPU claim; the CPU path of thinning is gated by tests/benchmarks/test_pruning_speedup.py")
    dense, thinned, info, workload = resnet50_pair(ctx.cache_dir)
    ctx.record("model", info)
    ctx.record("settings", dataclasses.asdict(settings()))
    ctx.record("precision", {"dtype": "float32", "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
                             "matmul_precision": torch.get_float32_matmul_precision()})  # fmt: skip
    models = {"dense": dense.to(ctx.device), "dense_copy": copy.deepcopy(dense).to(ctx.device),
              "thinned": thinned.to(ctx.device), "ideal": info["ideal_speedup"]}  # fmt: skip
    points: dict[str, dict[str, Any]] = {backend: {} for backend in BACKENDS}
    for backend in BACKENDS:
        for batch in BATCHES:
            if backend == "compile" and ctx.remaining() < COMPILE_POINT_S:
                points[backend][str(batch)] = {"status": "not run", "reason": f"{ctx.remaining():.0f} s left in the "
                                               f"step, a compile point needs ~{COMPILE_POINT_S:.0f} s"}  # fmt: skip
            else:
                try:
                    points[backend][str(batch)] = measure_point(backend, models, workload, batch, ctx.device)
                except Exception as exc:  # noqa: BLE001 - recorded per point; the others still run
                    points[backend][str(batch)] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                    torch.cuda.empty_cache()
            ctx.record("points", points)
