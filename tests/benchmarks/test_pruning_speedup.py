"""Thinned vs dense latency of a channel-pruned ResNet-18 (Taylor pruning's physical removal, arXiv 1906.10771).

Gates only ratios measured in this one process (METHODOLOGY §10): the three models run interleaved (dense, masked,
thinned, dense, ...; METHODOLOGY §9) on one thread. The gate compares the minimum of each model's rounds, the
estimator least affected by other processes on a shared CI machine (medians are recorded beside it).
Half of every channel group is removed, which cuts FLOPs ~3.7x; the gate asks for a generous 1.2x on eager CPU at
batch 32. The masked model (zeroed channels at the dense shape) must not look faster than dense (ideal 1.0x).
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
import torchvision
from torch import nn

from harness.doctor.thinned import thin_with_masks  # shared with `python -m harness doctor` (thinned steps)
from harness.meters.flops import count_flops


def _every_other(size: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[::2] = True
    return mask


def _interleaved(models: dict[str, nn.Module], x: torch.Tensor, rounds: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(x)
        for _ in range(rounds):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                samples[name].append(time.perf_counter() - start)
    return samples


@pytest.mark.benchmark
def test_thinned_resnet18_latency_ratio(benchmark: pytest.FixtureRequest) -> None:
    torch.manual_seed(0)
    dense = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(32, 3, 32, 32)
    masked, thinned = thin_with_masks(dense, (x[:2],), lambda model, groups: [_every_other(g.size) for g in groups])
    ideal = count_flops(dense, (x[:1],))["flops"] / count_flops(thinned, (x[:1],))["flops"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        samples = _interleaved({"dense": dense, "masked": masked, "thinned": thinned}, x, rounds=20)
    finally:
        torch.set_num_threads(threads)
    best = {name: min(values) for name, values in samples.items()}
    median = {name: statistics.median(values) for name, values in samples.items()}
    achieved = best["dense"] / best["thinned"]
    masked_ratio = best["dense"] / best["masked"]
    benchmark.extra_info.update(
        {
            "ideal_flops_speedup": ideal,
            "thinned_speedup_min": achieved,
            "masked_speedup_min": masked_ratio,
            "thinned_speedup_median": median["dense"] / median["thinned"],
            "masked_speedup_median": median["dense"] / median["masked"],
            "batch": 32,
            "threads": 1,
        }
    )
    with torch.inference_mode():
        benchmark.pedantic(thinned, args=(x,), rounds=5, warmup_rounds=1, iterations=1)
    assert ideal > 3.0
    assert achieved >= 1.2, f"thinned only {achieved:.2f}x faster than dense (ideal {ideal:.2f}x)"
    assert masked_ratio < 1.3, f"masked model looks {masked_ratio:.2f}x faster than dense at the same shape"
