"""Speedup accounting (METHODOLOGY §8-9): ideal against achieved speedup per backend and batch.

- ``ideal_flops``: dense FLOPs / compressed dense FLOPs (FlopCounterMode counts what dense kernels execute, so a
  masked model run with dense kernels has ideal 1.0 and is never reported as faster).
- ``ideal_effective_flops``: the same with effective FLOPs (density-weighted, 2:4 = 0.5): what sparse kernels could
  reach; shown for reference, not used for efficiency.
- ``ideal_roofline``: ratio of the roofline bounds max(FLOPs / peak, bytes / bandwidth) with this machine's measured
  peaks, per batch size.
- ``achieved``: dense time / compressed time on the same backend and batch; at batch 1 it is the ratio of median
  latencies with a bootstrap confidence interval, and the verdict compares it with the A/A spread of the dense
  model's own samples (even vs odd samples of its interleaved-in-time loop): a smaller difference is
  "no difference" (§9).
- ``efficiency`` = achieved / ideal. Every table carries the compressed model's ``execution`` label
  ('dense', 'executed' = a real low-bit/sparse kernel ran, 'simulated' = fake-quant, savings analytic only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.meters.latency import MeasureSettings, measure_interleaved
from harness.meters.stats import aa_spread, bootstrap_ratio_ci, compare_to_aa, interleaved_halves

VERDICTS = {"B faster": "faster", "B slower": "slower", "no difference": "no difference"}


def _ok(entry: dict[str, Any]) -> bool:
    return entry.get("status") == "ok"


def _p50(entry: dict[str, Any]) -> float | None:
    return entry["single_stream"]["host_latency"]["p50"] if _ok(entry) else None


def _batch_latency(entry: dict[str, Any], batch_size: int) -> float | None:
    if not _ok(entry):
        return None
    for point in entry["offline"]["sweep"]:
        if point["batch_size"] == batch_size:
            return point["latency_ms"]
    return None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _samples(entry: dict[str, Any]) -> list[float] | None:
    path = entry.get("single_stream", {}).get("samples_path")
    if not path or not Path(path).exists():
        return None
    return [float(line) for line in Path(path).read_text().split()]


def latency_speedup_ci(dense: dict[str, Any], other: dict[str, Any]) -> dict[str, Any] | None:
    """Bootstrap CI of median(dense latency) / median(compressed latency) and the A/A verdict, from raw samples."""
    a, b = _samples(dense), _samples(other)
    if not a or not b:
        return None
    ci = bootstrap_ratio_ci(a, b)
    first, second = interleaved_halves(a)
    spread = aa_spread(first, second) if first and second else None
    ci["aa_spread"] = spread
    ci["verdict"] = VERDICTS[compare_to_aa(ci, spread)] if spread is not None else None
    ci["basis"] = (
        "separate measurements (not interleaved); A/A spread from the dense samples' even/odd halves, which does "
        "not cover load drift between the two measurements: use interleaved_comparison for a verdict"
    )
    return ci


def interleaved_comparison(
    dense: Any,
    compressed: Any,
    inputs: list[tuple[Any, ...]],
    settings: MeasureSettings,
    device: str = "cpu",
    clock: Any = None,
) -> dict[str, Any]:
    """METHODOLOGY §9 comparison: dense, dense again and compressed timed in turn in one loop; the speedup is the
    ratio of medians with a bootstrap CI, and a difference inside the dense-vs-dense (A/A) spread is "no difference".
    """
    kwargs = {"clock": clock} if clock is not None else {}
    fns = {"A": dense, "A_repeat": dense, "B": compressed}
    samples = measure_interleaved(fns, inputs, settings, device, **kwargs)
    ci = bootstrap_ratio_ci(samples["A"], samples["B"])
    spread = aa_spread(samples["A"], samples["A_repeat"])
    return {**ci, "aa_spread": spread, "verdict": VERDICTS[compare_to_aa(ci, spread)], "basis": "interleaved A, A', B"}


def _roofline_s(measured: dict[str, Any], batch_size: int) -> float | None:
    point = measured.get("roofline", {}).get("by_batch", {}).get(str(batch_size))
    return point["seconds"] if point else None


def _by_batch(
    dense: dict[str, Any], other: dict[str, Any], base: dict[str, Any], entry: dict[str, Any], ideal: float | None
) -> dict[str, Any]:
    batches = {}
    for point in entry["offline"]["sweep"]:
        bs = point["batch_size"]
        achieved = ratio(_batch_latency(base, bs), point["latency_ms"])
        roof = ratio(_roofline_s(dense, bs), _roofline_s(other, bs))
        batches[str(bs)] = {
            "achieved": achieved,
            "efficiency": ratio(achieved, ideal),
            "ideal_roofline": roof,
            "efficiency_roofline": ratio(achieved, roof),
        }
    return batches


def compare(dense: dict[str, Any], other: dict[str, Any], execution: str | None = None) -> dict[str, Any]:
    """Ideal (FLOPs, effective FLOPs, roofline) and achieved speedup of ``other`` against ``dense`` per backend."""
    ideal = ratio(dense["flops"]["flops"], other["flops"]["flops"])
    ideal_effective = ratio(dense["flops"].get("effective_flops"), other["flops"].get("effective_flops"))
    roof_bs1 = ratio(_roofline_s(dense, 1), _roofline_s(other, 1))
    per_backend: dict[str, Any] = {}
    for name, entry in other["backends"].items():
        base = dense["backends"].get(name, {})
        achieved_bs1 = ratio(_p50(base), _p50(entry))
        both = _ok(entry) and _ok(base)
        per_backend[name] = {
            "achieved_bs1_p50": achieved_bs1,
            "achieved_bs1_ci": latency_speedup_ci(base, entry) if both else None,
            "efficiency_bs1": ratio(achieved_bs1, ideal),
            "efficiency_roofline_bs1": ratio(achieved_bs1, roof_bs1),
            "by_batch": _by_batch(dense, other, base, entry, ideal) if both else {},
        }
    return {
        "execution": execution,
        "ideal_flops": ideal,
        "ideal_effective_flops": ideal_effective,
        "ideal_roofline_bs1": roof_bs1,
        "backends": per_backend,
    }


def speedup_table(
    baseline: dict[str, Any],
    compressed: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    execution: str | None = None,
) -> dict[str, Any]:
    """Speedup of the compressed model (labelled with its ``execution``) and of each variant against the baseline."""
    table = {"compressed": compare(baseline, compressed, execution)}
    for name, measured in variants.items():
        table[name] = compare(baseline, measured)
    return table
