"""Latency and throughput (METHODOLOGY §1-2).

Warm-up: at least ``warmup_s`` seconds AND ``warmup_count`` calls. Timing stops only when BOTH ``min_time_s`` and
``min_count`` are met (LoadGen/trtexec treat both as minimums). Inputs cycle through a pool of distinct real samples.
CPU: ``time.perf_counter_ns`` around each call. CUDA: host latency with synchronize + perf_counter_ns, and GPU compute
time from ``torch.cuda.Event`` pairs on the current stream; both are reported, named as trtexec names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.meters.stats import summarize


@dataclass(frozen=True)
class MeasureSettings:
    min_time_s: float
    min_count: int
    warmup_s: float = 1.0
    warmup_count: int = 20
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    processes: int = 1


MEASURE_PROFILES = {
    # CI: METHODOLOGY's smoke minimums (3 s and 100 queries).
    "smoke": MeasureSettings(min_time_s=3.0, min_count=100, batch_sizes=(1, 8, 32)),
    # Report-grade: 60 s and 662 queries (enough for p99); the sweep goes to the largest batch that fits.
    "report": MeasureSettings(min_time_s=60.0, min_count=662, batch_sizes=(1, 8, 32, 64, 128, 256), processes=5),
    # Tests and quick looks only: below METHODOLOGY's minimums, so records say so in their flags.
    "quick": MeasureSettings(min_time_s=0.2, min_count=20, warmup_s=0.1, warmup_count=3, batch_sizes=(1, 4)),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure_latency(
    fn: Callable[..., Any],
    inputs: Sequence[tuple[Any, ...]],
    settings: MeasureSettings,
    device: str = "cpu",
    samples_path: Path | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, Any]:
    """Time ``fn(*inputs[i % len(inputs)])`` per call. Returns host-latency stats in ms (and GPU compute time on CUDA).

    ``clock`` is injectable so tests can check the stopping rules with a fake clock.
    """
    if not inputs:
        raise ValueError("measure_latency needs at least one input tuple")
    cuda = device.startswith("cuda")
    warm_start, count = clock(), 0
    while count < settings.warmup_count or (clock() - warm_start) < settings.warmup_s * 1e9:
        fn(*inputs[count % len(inputs)])
        count += 1
    _sync(device)
    host_ns: list[int] = []
    events: list[tuple[Any, Any]] = []
    start = clock()
    i = 0
    while i < settings.min_count or (clock() - start) < settings.min_time_s * 1e9:
        args = inputs[i % len(inputs)]
        if cuda:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            t0 = clock()
            begin.record()
            fn(*args)
            end.record()
            torch.cuda.synchronize()
            host_ns.append(clock() - t0)
            events.append((begin, end))
        else:
            t0 = clock()
            fn(*args)
            host_ns.append(clock() - t0)
        i += 1
    wall_s = (clock() - start) / 1e9
    host_ms = [ns / 1e6 for ns in host_ns]
    result: dict[str, Any] = {"unit": "ms", "host_latency": summarize(host_ms), "wall_s": wall_s, "device": device}
    if cuda:
        gpu_ms = [b.elapsed_time(e) for b, e in events]
        result["gpu_compute_time"] = summarize(gpu_ms, gpu=True)
    flags = []
    if wall_s < settings.min_time_s or len(host_ns) < settings.min_count:
        flags.append("below_minimums")
    result["flags"] = sorted(set(flags + result["host_latency"]["flags"]))
    if samples_path is not None:
        samples_path.parent.mkdir(parents=True, exist_ok=True)
        samples_path.write_text("\n".join(f"{v:.6f}" for v in host_ms) + "\n")
        result["samples_path"] = str(samples_path)
    return result


def measure_throughput(
    fn: Callable[..., Any], inputs: Sequence[tuple[Any, ...]], batch_size: int, settings: MeasureSettings, device: str
) -> dict[str, Any]:
    """Offline scenario: samples / wall time from the first call after warm-up to the last completion."""
    for i in range(max(settings.warmup_count // 4, 2)):
        fn(*inputs[i % len(inputs)])
    _sync(device)
    calls = 0
    start = time.perf_counter_ns()
    while calls < max(settings.min_count // 10, 5) or (time.perf_counter_ns() - start) < settings.min_time_s * 1e9 / 3:
        fn(*inputs[calls % len(inputs)])
        calls += 1
    _sync(device)
    wall = (time.perf_counter_ns() - start) / 1e9
    return {"batch_size": batch_size, "calls": calls, "wall_s": wall, "samples_per_s": calls * batch_size / wall}
