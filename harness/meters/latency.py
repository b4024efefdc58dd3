"""Latency and throughput (METHODOLOGY §1-2).

Warm-up: at least ``warmup_s`` seconds AND ``warmup_count`` calls. Timing stops only when BOTH ``min_time_s`` and
``min_count`` are met (LoadGen/trtexec treat both as minimums). Inputs cycle through a pool of distinct real samples.
CPU: ``time.perf_counter_ns`` around each call. CUDA: host latency with synchronize + perf_counter_ns, and GPU compute
time from ``torch.cuda.Event`` pairs on the current stream; both are reported, named as trtexec names them.
A runnable may offer ``timed_region()`` (a context manager): the meter enters it around the timed loop only, which is
how the torch.compile backend turns a recompile during timing into an error. Settings below METHODOLOGY's smoke
minimums (3 s and 100 queries; warm-up 1 s and 20 calls) are allowed for quick looks, and every result measured with
them carries the flag ``below_methodology_minimums``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.meters.stats import bootstrap_percentile_ci, summarize


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
    # Tests and quick looks only: below METHODOLOGY's minimums, so records say so in their flags
    # ("below_methodology_minimums").
    "quick": MeasureSettings(min_time_s=0.2, min_count=20, warmup_s=0.1, warmup_count=3, batch_sizes=(1, 4)),
}


METHODOLOGY_MINIMUMS = MEASURE_PROFILES["smoke"]


def below_methodology(settings: MeasureSettings) -> bool:
    """True when ``settings`` are weaker than METHODOLOGY's smoke minimums (time, count or warm-up)."""
    floor = METHODOLOGY_MINIMUMS
    return (
        settings.min_time_s < floor.min_time_s
        or settings.min_count < floor.min_count
        or settings.warmup_s < floor.warmup_s
        or settings.warmup_count < floor.warmup_count
    )


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed_region(fn: Any) -> Any:
    region = getattr(fn, "timed_region", None)
    return region() if callable(region) else contextlib.nullcontext()


def warm_up(
    fn: Callable[..., Any],
    inputs: Sequence[tuple[Any, ...]],
    settings: MeasureSettings,
    device: str,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> int:
    """Calls ``fn`` until both ``warmup_s`` and ``warmup_count`` are reached; returns the number of calls."""
    start, count = clock(), 0
    while count < settings.warmup_count or (clock() - start) < settings.warmup_s * 1e9:
        fn(*inputs[count % len(inputs)])
        count += 1
    _sync(device)
    return count


def _cpu_loop(
    fn: Callable[..., Any], inputs: Sequence[tuple[Any, ...]], settings: MeasureSettings, clock: Callable[[], int]
) -> tuple[list[int], int]:
    host_ns: list[int] = []
    n_inputs, limit_ns = len(inputs), settings.min_time_s * 1e9
    start = now = clock()
    i = 0
    while i < settings.min_count or (now - start) < limit_ns:
        t0 = clock()
        fn(*inputs[i % n_inputs])
        now = clock()
        host_ns.append(now - t0)
        i += 1
    return host_ns, now - start


def _cuda_loop(
    fn: Callable[..., Any], inputs: Sequence[tuple[Any, ...]], settings: MeasureSettings, clock: Callable[[], int]
) -> tuple[list[int], int, list[tuple[Any, Any]]]:
    host_ns: list[int] = []
    events: list[tuple[Any, Any]] = []
    start = now = clock()
    i = 0
    while i < settings.min_count or (now - start) < settings.min_time_s * 1e9:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        t0 = clock()
        begin.record()
        fn(*inputs[i % len(inputs)])
        end.record()
        torch.cuda.synchronize()
        now = clock()
        host_ns.append(now - t0)
        events.append((begin, end))
        i += 1
    return host_ns, now - start, events


def measure_latency(
    fn: Callable[..., Any],
    inputs: Sequence[tuple[Any, ...]],
    settings: MeasureSettings,
    device: str = "cpu",
    samples_path: Path | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, Any]:
    """SingleStream: time ``fn(*inputs[i % len(inputs)])`` per call, the next call when the previous one finished.

    Returns host-latency stats in ms (and GPU compute time on CUDA). ``clock`` is injectable so tests can check the
    stopping rules with a fake clock.
    """
    if not inputs:
        raise ValueError("measure_latency needs at least one input tuple")
    cuda = device.startswith("cuda")
    warmup_calls = warm_up(fn, inputs, settings, device, clock)
    events: list[tuple[Any, Any]] = []
    with _timed_region(fn):
        if cuda:
            host_ns, wall_ns, events = _cuda_loop(fn, inputs, settings, clock)
        else:
            host_ns, wall_ns = _cpu_loop(fn, inputs, settings, clock)
    wall_s = wall_ns / 1e9
    host_ms = [ns / 1e6 for ns in host_ns]
    result: dict[str, Any] = {
        "unit": "ms",
        "host_latency": {**summarize(host_ms), "p90_ci": bootstrap_percentile_ci(host_ms, 90)},
        "wall_s": wall_s,
        "device": device,
        "warmup_calls": warmup_calls,
        "distinct_inputs": len(inputs),
    }
    if cuda:
        result["gpu_compute_time"] = summarize([b.elapsed_time(e) for b, e in events], gpu=True)
    flags = list(result["host_latency"]["flags"]) + list(result.get("gpu_compute_time", {}).get("flags", []))
    if wall_s < settings.min_time_s or len(host_ns) < settings.min_count:
        flags.append("below_minimums")
    if below_methodology(settings):
        flags.append("below_methodology_minimums")
    result["flags"] = sorted(set(flags))
    if samples_path is not None:
        samples_path.parent.mkdir(parents=True, exist_ok=True)
        samples_path.write_text("\n".join(f"{v:.6f}" for v in host_ms) + "\n")
        result["samples_path"] = str(samples_path)
    return result


def measure_throughput(
    fn: Callable[..., Any], inputs: Sequence[tuple[Any, ...]], batch_size: int, settings: MeasureSettings, device: str
) -> dict[str, Any]:
    """Offline: samples / wall time from the first call after warm-up to the last completion (trtexec "Total Host
    Walltime"). Warm-up follows the same rule as SingleStream; timing stops when both ``min_time_s`` and
    ``min_count`` samples are reached."""
    warmup_calls = warm_up(fn, inputs, settings, device)
    calls = 0
    with _timed_region(fn):
        start = now = time.perf_counter_ns()
        while calls * batch_size < settings.min_count or (now - start) < settings.min_time_s * 1e9:
            fn(*inputs[calls % len(inputs)])
            calls += 1
            now = time.perf_counter_ns()
        _sync(device)
    wall = (time.perf_counter_ns() - start) / 1e9
    flags = ["below_methodology_minimums"] if below_methodology(settings) else []
    return {
        "batch_size": batch_size,
        "calls": calls,
        "samples": calls * batch_size,
        "wall_s": wall,
        "samples_per_s": calls * batch_size / wall,
        "latency_ms": 1000.0 * wall / calls,
        "warmup_calls": warmup_calls,
        "flags": flags,
    }


def measure_interleaved(
    fns: dict[str, Callable[..., Any]],
    inputs: Sequence[tuple[Any, ...]],
    settings: MeasureSettings,
    device: str = "cpu",
    clock: Callable[[], int] = time.perf_counter_ns,
) -> dict[str, list[float]]:
    """Host latency samples (ms) of several callables measured in turn, A, B, A, B, ... on the same inputs (§9).

    Interleaving spreads frequency scaling and machine-load drift evenly over all of them (PyTorch's dynamo
    benchmarks compare this way); the order is rotated every round (A B C, B C A, C A B, ...) so that no callable
    always runs in the same position (right after another one's cache traffic, say). Each is warmed up first; the
    loop stops when both minimums are met.
    """
    for fn in fns.values():
        warm_up(fn, inputs, settings, device, clock)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    start = now = clock()
    i = 0
    while i < settings.min_count or (now - start) < settings.min_time_s * 1e9:
        args = inputs[i % len(inputs)]
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            fn = fns[name]
            _sync(device)
            t0 = clock()
            fn(*args)
            _sync(device)
            now = clock()
            samples[name].append((now - t0) / 1e6)
        i += 1
    return samples
