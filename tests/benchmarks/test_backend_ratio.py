"""ONNX Runtime against eager PyTorch on a small CNN: ratio of median latencies measured in one process.

Run: ``pytest tests/benchmarks --benchmark-json=results/benchmarks/benchmarks.json``. The gate is generous (shared
CI machines show 10-125 % run-to-run noise, METHODOLOGY §10): ONNX Runtime may not be more than 3x slower.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from harness.backends import BACKENDS
from harness.meters.latency import MeasureSettings, measure_latency
from harness.meters.stats import bootstrap_ratio_ci

SETTINGS = MeasureSettings(min_time_s=0.3, min_count=100, warmup_s=0.2, warmup_count=20)


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    ).eval()


def _p50(runnable: Any, pool: list[tuple[torch.Tensor]]) -> float:
    return measure_latency(runnable, pool, SETTINGS)["host_latency"]["p50"]


def ort_vs_eager() -> dict[str, Any]:
    model = small_cnn()
    pool = [(torch.randn(1, 3, 32, 32),) for _ in range(64)]
    eager = BACKENDS.get("eager")().prepare(model, pool[0], "cpu")
    ort = BACKENDS.get("onnxruntime")().prepare(model, pool[0], "cpu")
    eager_p50, ort_p50 = [], []
    for _ in range(3):  # interleave A, B, A, B (METHODOLOGY §9)
        eager_p50.append(_p50(eager, pool))
        ort_p50.append(_p50(ort, pool))
    ci = bootstrap_ratio_ci(ort_p50, eager_p50, resamples=500)
    return {
        "ort_over_eager": ci["ratio"],
        "low": ci["low"],
        "high": ci["high"],
        "eager_p50_ms": sorted(eager_p50)[1],
        "ort_p50_ms": sorted(ort_p50)[1],
    }


@pytest.mark.benchmark
def test_onnxruntime_not_far_slower_than_eager(benchmark: Any) -> None:
    result = benchmark.pedantic(ort_vs_eager, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["ort_over_eager"] < 3.0, result
