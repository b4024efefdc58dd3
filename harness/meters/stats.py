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


def _bootstrap_medians(values: Any, resamples: int, rng: Any, p: float = 50) -> Any:
    """Nearest-rank ``p``-th percentiles (the median by default) of ``resamples`` resamples with replacement, in
    chunks of <= ~2M drawn elements."""
    import numpy as np

    n = values.size
    rank = max(math.ceil(n * p / 100.0), 1) - 1
    chunk = max(1, 2_000_000 // n)
    medians = []
    for begin in range(0, resamples, chunk):
        index = rng.integers(0, n, size=(min(chunk, resamples - begin), n))
        medians.append(np.partition(values[index], rank, axis=1)[:, rank])
    return np.concatenate(medians)


def bootstrap_ratio_ci(
    numerator: Sequence[float],
    denominator: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """Ratio of medians ``median(numerator) / median(denominator)`` with a percentile-bootstrap interval (§9).

    The two samples are resampled independently (they come from separate timing loops); medians are nearest-rank
    as everywhere else in the harness. A speedup is ``bootstrap_ratio_ci(dense_times, compressed_times)``.

    Returns:
        ``{"ratio", "low", "high", "confidence", "resamples", "n_numerator", "n_denominator"}``.
    """
    import numpy as np

    if not numerator or not denominator:
        raise ValueError("bootstrap_ratio_ci needs samples on both sides")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    a = np.asarray(numerator, dtype=float)
    b = np.asarray(denominator, dtype=float)
    rng = np.random.default_rng(seed)
    med_a = _bootstrap_medians(a, resamples, rng)
    med_b = _bootstrap_medians(b, resamples, rng)
    ratios = med_a / np.maximum(med_b, 1e-300)
    alpha = (1.0 - confidence) / 2.0
    return {
        "ratio": nearest_rank(sorted(a.tolist()), 50) / nearest_rank(sorted(b.tolist()), 50),
        "low": float(np.quantile(ratios, alpha)),
        "high": float(np.quantile(ratios, 1.0 - alpha)),
        "confidence": confidence,
        "resamples": resamples,
        "n_numerator": int(a.size),
        "n_denominator": int(b.size),
    }


def bootstrap_percentile_ci(
    samples: Sequence[float], p: int, confidence: float = 0.95, resamples: int = 2000, seed: int = 0
) -> dict[str, Any] | None:
    """Percentile-bootstrap interval of the nearest-rank ``p``-th percentile (None below its LoadGen minimum n)."""
    import numpy as np

    values = np.asarray(sorted(float(v) for v in samples), dtype=float)
    if values.size < PERCENTILE_MIN_SAMPLES[p]:
        return None
    boot = _bootstrap_medians(values, resamples, np.random.default_rng(seed), p)
    alpha = (1.0 - confidence) / 2.0
    return {
        "value": nearest_rank(values.tolist(), p),
        "low": float(np.quantile(boot, alpha)),
        "high": float(np.quantile(boot, 1.0 - alpha)),
        "confidence": confidence,
    }


def aa_spread(first: Sequence[float], second: Sequence[float], **kwargs: Any) -> float:
    """Relative spread of an A-vs-A comparison: how far from 1 the A/A ratio's bootstrap interval reaches.

    Two sets of samples of the *same* configuration (interleaved halves of one run, or two runs of A) show how large a
    "difference" noise alone produces; §9 calls any A-vs-B difference smaller than this "no difference".
    """
    ci = bootstrap_ratio_ci(first, second, **kwargs)
    return max(abs(ci["ratio"] - 1.0), abs(ci["low"] - 1.0), abs(ci["high"] - 1.0))


MIN_EFFECT = 0.02


def compare_to_aa(ratio_ci: dict[str, Any], spread: float, min_effect: float = MIN_EFFECT) -> str:
    """Verdict of an A-vs-B ratio (A time / B time) against the A/A spread (METHODOLOGY §9).

    A difference is reported only when B's whole confidence interval lies outside ``1 +/- tolerance``, with
    tolerance = max(A/A spread, ``min_effect``): "B faster" (A takes longer) or "B slower"; anything else is
    "no difference". Why this strict form: with A' an independent copy of A (so the A/A pair sees the same
    memory-placement effects as A/B), the looser rule "ratio outside the spread and interval excluding 1" called two
    identical copies different in 5 of 20 trials on a 2-core CPU; this rule in 0 of 20. The 2 % floor is a
    practical-significance threshold (asv's default is 10 %) below which a CPU timing difference is not claimed.
    """
    tolerance = max(spread, min_effect)
    if ratio_ci["low"] > 1.0 + tolerance:
        return "B faster"
    if ratio_ci["high"] < 1.0 - tolerance:
        return "B slower"
    return "no difference"


def interleaved_halves(samples: Sequence[float]) -> tuple[list[float], list[float]]:
    """Even- and odd-indexed samples of one timing loop: an A/A pair measured by interleaving (A, A', A, A', ...)."""
    values = list(samples)
    return values[0::2], values[1::2]
