"""Statistics of timing samples (METHODOLOGY §1, §9).

Percentiles are nearest-rank, ``sorted[ceil(n*p) - 1]`` as MLPerf LoadGen computes them. A percentile is published
only with enough samples (LoadGen early-stopping minimums): p90 needs n >= 64, p95 n >= 130, p99 n >= 662;
below that the field is ``None``. Flags: ``unstable`` when CV > 2.5 % (GPU compute time, trtexec's rule) or
IQR/median > 10 % (torch.utils.benchmark's rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

PERCENTILE_MIN_SAMPLES = {50: 1, 90: 64, 95: 130, 99: 662}
CV_LIMIT_GPU = 0.025
IQR_LIMIT = 0.10


def nearest_rank(sorted_values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no samples")
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {p}")
    rank = math.ceil(len(sorted_values) * p / 100.0)
    return float(sorted_values[max(rank, 1) - 1])


def percentile_or_none(sorted_values: Sequence[float], p: int) -> float | None:
    """Nearest-rank percentile, or None when there are fewer samples than LoadGen requires for it."""
    if len(sorted_values) < PERCENTILE_MIN_SAMPLES[p]:
        return None
    return nearest_rank(sorted_values, p)


def summarize(samples: Sequence[float], gpu: bool = False) -> dict[str, Any]:
    """n, mean, std (sample), cv, min, p50/p90/p95/p99 (None below their minimum n), max, iqr and flags."""
    values = sorted(float(v) for v in samples)
    n = len(values)
    if n == 0:
        raise ValueError("cannot summarize zero samples")
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    cv = std / mean if mean > 0 else 0.0
    q1, q3 = nearest_rank(values, 25), nearest_rank(values, 75)
    median = nearest_rank(values, 50)
    iqr_ratio = (q3 - q1) / median if median > 0 else 0.0
    flags = []
    if gpu and cv > CV_LIMIT_GPU:
        flags.append("unstable")
    if iqr_ratio > IQR_LIMIT and "unstable" not in flags:
        flags.append("unstable")
    return {
        "n": n,
        "mean": mean,
        "std": std,
        "cv": cv,
        "min": values[0],
        "p50": median,
        "p90": percentile_or_none(values, 90),
        "p95": percentile_or_none(values, 95),
        "p99": percentile_or_none(values, 99),
        "max": values[-1],
        "iqr_over_median": iqr_ratio,
        "flags": flags,
    }
