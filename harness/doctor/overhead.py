"""Latency meter overhead at 1 ms per call: the host loop on CPU, the CUDA-event loop on a GPU.

CPU (the logic ``tests/benchmarks/test_meter_overhead.py`` gates): a 1 ms busy-wait is timed by
:func:`~harness.meters.latency.measure_latency`; its bookkeeping per call is ``wall - sum(samples)`` plus the one
clock read that falls inside each sample, and the ratio is ``(call + bookkeeping) / call``.

GPU: the callable is ``torch.cuda._sleep`` (a spin kernel) calibrated to 1 ms with CUDA events. The metered loop
(``measure_latency(device="cuda")``: two events and two synchronizes per call) is compared with the bare loop that any
correct SingleStream timing needs (``fn(); torch.cuda.synchronize()``), in interleaved repeats; the overhead is
``median(metered wall per call) / median(bare wall per call) - 1``: everything the meter adds, inside the samples or
between them. The sleep kernel's length follows the SM clock, so both loops are repeated in turn (§9).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

from harness.doctor.record import StepContext

CALLS = 100
REPEATS = 5


# ---- CPU ------------------------------------------------------------------------------------------------------------
def busy_wait_1ms() -> None:
    """A callable of ~1 ms that ends at a deadline, so a preemption inside it does not lengthen it."""
    deadline = time.perf_counter_ns() + 1_000_000
    while time.perf_counter_ns() < deadline:
        pass


def bare_loop_per_call(fn: Callable[[], Any] = busy_wait_1ms, calls: int = CALLS) -> float:
    """Nanoseconds per call of a plain loop over ``fn``."""
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - start) / calls


def clock_cost_ns() -> float:
    start = time.perf_counter_ns()
    for _ in range(10_000):
        time.perf_counter_ns()
    return (time.perf_counter_ns() - start) / 10_000


def metered(calls: int = CALLS) -> dict[str, float]:
    """Per-call wall time of the meter's loop and the part of it spent outside the timed callable.

    ``wall - sum(samples)`` is the bookkeeping between calls; one clock read falls inside each sample, so it is
    added back. Preemption inside the 1 ms callable lands in the samples, not in the bookkeeping, which keeps this
    estimate stable on a loaded machine.
    """
    from harness.meters.latency import MeasureSettings, measure_latency

    settings = MeasureSettings(min_time_s=0.0, min_count=calls, warmup_s=0.0, warmup_count=1)
    result = measure_latency(lambda: busy_wait_1ms(), [()], settings)
    n, wall_ns = result["host_latency"]["n"], result["wall_s"] * 1e9
    samples_ns = result["host_latency"]["mean"] * 1e6 * n
    return {
        "per_call_ns": wall_ns / n,
        "bookkeeping_ns": (wall_ns - samples_ns) / n + clock_cost_ns(),
        "call_p50_ns": result["host_latency"]["p50"] * 1e6,
    }


def overhead_ratio(repeats: int = REPEATS) -> dict[str, Any]:
    """(callable + meter bookkeeping) / callable, medians over ``repeats``; also the interleaved wall-time ratio of
    metered and bare loops (minimum per-call time over repeats), which preemption makes noisy."""
    bare, runs = [], []
    for _ in range(repeats):
        bare.append(bare_loop_per_call())
        runs.append(metered())
    bookkeeping = sorted(r["bookkeeping_ns"] for r in runs)[repeats // 2]
    call = sorted(r["call_p50_ns"] for r in runs)[repeats // 2]
    return {
        "bookkeeping_ns_per_call": bookkeeping,
        "call_p50_ns": call,
        "ratio": (call + bookkeeping) / call,
        "wall_ratio_min_metered_over_min_bare": min(r["per_call_ns"] for r in runs) / min(bare),
    }


# ---- GPU ------------------------------------------------------------------------------------------------------------
def calibrated_sleep(target_ms: float = 1.0) -> tuple[Callable[[], None], int, float]:
    """(callable, cycles, measured ms): ``torch.cuda._sleep(cycles)`` sized to ``target_ms`` with CUDA events."""
    import torch

    def event_ms(cycles: int, calls: int = 10) -> float:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        begin.record()
        for _ in range(calls):
            torch.cuda._sleep(cycles)
        end.record()
        end.synchronize()
        return begin.elapsed_time(end) / calls

    cycles = 1_000_000
    event_ms(cycles)  # first launch
    for _ in range(3):
        cycles = max(1000, int(cycles * target_ms / max(event_ms(cycles), 1e-6)))
    return (lambda: torch.cuda._sleep(cycles)), cycles, event_ms(cycles, calls=20)


def gpu_bare_per_call(fn: Callable[[], Any], calls: int) -> float:
    """Nanoseconds per call of ``fn(); torch.cuda.synchronize()``: the least a correct SingleStream loop does."""
    import torch

    torch.cuda.synchronize()
    start = time.perf_counter_ns()
    for _ in range(calls):
        fn()
        torch.cuda.synchronize()
    return (time.perf_counter_ns() - start) / calls


def gpu_metered_per_call(fn: Callable[[], Any], calls: int) -> dict[str, float]:
    from harness.meters.latency import MeasureSettings, measure_latency

    settings = MeasureSettings(min_time_s=0.0, min_count=calls, warmup_s=0.0, warmup_count=5)
    result = measure_latency(lambda: fn(), [()], settings, device="cuda")
    return {
        "per_call_ns": result["wall_s"] * 1e9 / result["host_latency"]["n"],
        "host_p50_ms": result["host_latency"]["p50"],
        "gpu_p50_ms": result["gpu_compute_time"]["p50"],
    }


def gpu_overhead(calls: int = CALLS, repeats: int = REPEATS) -> dict[str, Any]:
    """Overhead of the CUDA-event latency loop over the bare synchronizing loop, at a 1 ms kernel."""
    fn, cycles, kernel_ms = calibrated_sleep(1.0)
    bare, runs = [], []
    for _ in range(repeats):
        bare.append(gpu_bare_per_call(fn, calls))
        runs.append(gpu_metered_per_call(fn, calls))
    bare_ns = statistics.median(bare)
    metered_ns = statistics.median(r["per_call_ns"] for r in runs)
    return {
        "overhead": metered_ns / bare_ns - 1.0,
        "callable_ms": kernel_ms,
        "sleep_cycles": cycles,
        "bare_per_call_ms": bare_ns / 1e6,
        "metered_per_call_ms": metered_ns / 1e6,
        "host_p50_ms": statistics.median(r["host_p50_ms"] for r in runs),
        "gpu_compute_p50_ms": statistics.median(r["gpu_p50_ms"] for r in runs),
        "calls": calls,
        "repeats": repeats,
        "method": "median over interleaved repeats of metered / bare wall time per call, minus 1",
    }


def run(ctx: StepContext) -> None:
    ctx.record("device", ctx.device)
    if ctx.device == "cuda":
        ctx.record("gpu", gpu_overhead())
    ctx.record("cpu", overhead_ratio())
