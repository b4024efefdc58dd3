"""CUDA paths of the meters and backends on a real GPU (``pytest -m gpu``; skipped without CUDA).

Run by ``python -m harness doctor --device cuda`` (step ``gpu_tests``) together with the other GPU-marked tests.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from harness.meters.latency import MeasureSettings, measure_latency, measure_throughput

pytestmark = pytest.mark.gpu

SETTINGS = MeasureSettings(min_time_s=0.2, min_count=64, warmup_s=0.1, warmup_count=5)


def test_cuda_event_time_lies_inside_host_time_and_matches_the_kernel() -> None:
    """A 2 ms spin kernel: GPU compute time (events) ~ 2 ms and below the synchronized host latency, which exceeds it
    only by launch and synchronize costs."""
    from harness.doctor.overhead import calibrated_sleep

    fn, _, kernel_ms = calibrated_sleep(2.0)
    result = measure_latency(lambda: fn(), [()], SETTINGS, device="cuda")
    gpu, host = result["gpu_compute_time"], result["host_latency"]
    assert gpu["n"] == host["n"] >= 64
    assert gpu["p50"] <= host["p50"] < gpu["p50"] + 0.25
    assert gpu["p50"] == pytest.approx(kernel_ms, rel=0.1)
    assert result["device"] == "cuda"


def test_throughput_waits_for_queued_kernels() -> None:
    """Offline timing on CUDA ends with a synchronize: wall time covers every queued 1 ms kernel."""
    from harness.doctor.overhead import calibrated_sleep

    fn, _, kernel_ms = calibrated_sleep(1.0)
    result = measure_throughput(lambda: fn(), [()], 1, SETTINGS, device="cuda")
    assert result["latency_ms"] >= 0.95 * kernel_ms
    assert result["calls"] >= SETTINGS.min_count


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)
    ).eval()


def test_onnxruntime_cuda_provider_agrees_with_eager() -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip(f"onnxruntime {ort.__version__} has no CUDAExecutionProvider ({ort.get_available_providers()})")
    from harness.backends import BACKENDS

    model = _small_cnn()
    x = torch.randn(4, 3, 32, 32, device="cuda")
    with torch.inference_mode():
        expected = copy.deepcopy(model).cuda()(x).cpu()
    runnable = BACKENDS.get("onnxruntime")().prepare(copy.deepcopy(model), (x[:1],), "cuda")
    assert runnable.info["providers"][0] == "CUDAExecutionProvider"
    assert torch.allclose(runnable.outputs(x), expected, atol=1e-4, rtol=1e-3)
    result = measure_latency(runnable, [(x[:1],)], SETTINGS, device="cuda")
    assert result["gpu_compute_time"]["p50"] > 0
