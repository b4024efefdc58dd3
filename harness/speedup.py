"""Speedup accounting (METHODOLOGY §8-9): ideal against achieved speedup per backend and batch.

- ``ideal_flops``: dense FLOPs / compressed dense FLOPs (FlopCounterMode counts what dense kernels execute, so a
  masked model run with dense kernels has ideal 1.0).
- ``ideal_effective_flops``: the same with effective FLOPs (density-weighted, 2:4 = 0.5): what sparse kernels could
  reach; shown for reference, not used for efficiency.
- ``ideal_roofline``: ratio of the roofline bounds max(FLOPs / peak, bytes / bandwidth) with this machine's measured
  peaks, per batch size.
- ``achieved``: the only speedup a user sees. It comes from one interleaved comparison in one process per backend and
  batch size (dense A, dense again A', compressed B, the order rotated every round): the ratio of median times with a
  bootstrap interval, and a verdict against the A/A spread (§9): a difference inside it is "no difference".
- ``efficiency`` = achieved / ideal FLOPs speedup.
- ``separate_measurements``: the ratio of the two models' own SingleStream medians and Offline sweep times. They were
  measured minutes apart, so load drift between them is not covered by any interval: they are kept for reference under
  that name, with no verdict, and never shown as a headline.

A model that cannot be faster than the dense one (ideal FLOPs speedup <= 1 and no low-bit or sparse kernel executed:
a masked model, DSD's dense output, fake-quant) is never shown as faster: a measured advantage there is a measurement
artifact, so its verdict reads "no difference", the raw verdict is kept as ``measured_verdict`` and the entry is
flagged ``faster_than_possible``. Every table carries the compressed model's ``execution`` label ('dense', 'executed'
= a real low-bit/sparse kernel ran, 'simulated' = fake-quant, savings analytic only).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.meters.latency import MeasureSettings, measure_interleaved
from harness.meters.stats import aa_spread, bootstrap_ratio_ci, compare_to_aa

VERDICTS = {"B faster": "faster", "B slower": "slower", "no difference": "no difference"}
INTERLEAVED_BASIS = "interleaved A, A' (an independent dense copy), B; order rotated each round; one process"
SEPARATE_BASIS = (
    "ratio of two separate measurements (not interleaved): load drift between them is not covered; no verdict"
)
IDEAL_TOLERANCE = 1e-3


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


def separate_ratio_ci(dense: dict[str, Any], other: dict[str, Any]) -> dict[str, Any] | None:
    """Bootstrap interval of median(dense) / median(compressed) from two separate SingleStream measurements.

    The interval covers sampling noise only, not drift between the two measurements, so no verdict is given.
    """
    a, b = _samples(dense), _samples(other)
    if not a or not b:
        return None
    return {**bootstrap_ratio_ci(a, b), "basis": SEPARATE_BASIS}


def interleaved_comparison(
    dense: Any,
    compressed: Any,
    inputs: Sequence[tuple[Any, ...]],
    settings: MeasureSettings,
    device: str = "cpu",
    clock: Any = None,
    dense_copy: Any = None,
) -> dict[str, Any]:
    """METHODOLOGY §9 comparison: dense, an independent copy of dense and compressed timed in turn in one loop; the
    speedup is the ratio of medians with a bootstrap CI, and a difference inside the dense-vs-dense (A/A) spread is
    "no difference" (:func:`harness.meters.stats.compare_to_aa`). ``dense_copy`` should be a separately prepared
    copy, so that the A/A pair sees the same memory-placement effects as A/B; without it A is timed twice.
    """
    kwargs = {"clock": clock} if clock is not None else {}
    fns = {"A": dense, "A_repeat": dense if dense_copy is None else dense_copy, "B": compressed}
    samples = measure_interleaved(fns, inputs, settings, device, **kwargs)
    ci = bootstrap_ratio_ci(samples["A"], samples["B"])
    spread = aa_spread(samples["A"], samples["A_repeat"])
    return {**ci, "aa_spread": spread, "verdict": VERDICTS[compare_to_aa(ci, spread)], "basis": INTERLEAVED_BASIS}


def cannot_be_faster(ideal_flops: float | None, execution: str | None) -> bool:
    """True for a model that runs the dense model's kernels on no fewer FLOPs (masked, dense output, fake-quant)."""
    return execution != "executed" and ideal_flops is not None and ideal_flops <= 1.0 + IDEAL_TOLERANCE


def bound_by_ideal(comparison: dict[str, Any], impossible_speedup: bool) -> dict[str, Any]:
    """The verdict a user sees: a "faster" that the model cannot have is reported as "no difference", flagged."""
    if not impossible_speedup or comparison.get("verdict") != "faster":
        return comparison
    flags = sorted({*comparison.get("flags", []), "faster_than_possible"})
    return {**comparison, "measured_verdict": "faster", "verdict": "no difference", "flags": flags}


def _roofline_s(measured: dict[str, Any], batch_size: int) -> float | None:
    point = measured.get("roofline", {}).get("by_batch", {}).get(str(batch_size))
    return point["seconds"] if point else None


def _separate(base: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    if not (_ok(entry) and _ok(base)):
        return {}
    by_batch = {
        str(p["batch_size"]): ratio(_batch_latency(base, p["batch_size"]), p["latency_ms"])
        for p in entry["offline"]["sweep"]
    }
    return {
        "basis": SEPARATE_BASIS,
        "ratio_bs1_p50": ratio(_p50(base), _p50(entry)),
        "ratio_bs1_ci": separate_ratio_ci(base, entry),
        "ratio_offline_by_batch": by_batch,
    }


def _achieved(
    interleaved: dict[str, Any], ideal: float | None, impossible: bool, dense: dict[str, Any], other: dict[str, Any]
) -> dict[str, Any]:
    """Per batch size: the interleaved comparison (bounded by what is possible), efficiency and roofline figures."""
    achieved, efficiency, roof, efficiency_roof = {}, {}, {}, {}
    for bs, comparison in (interleaved.get("by_batch") or {}).items():
        if comparison.get("status", "ok") != "ok":
            achieved[bs] = comparison
            continue
        achieved[bs] = bound_by_ideal(comparison, impossible)
        efficiency[bs] = ratio(comparison["ratio"], ideal)
        roof[bs] = ratio(_roofline_s(dense, int(bs)), _roofline_s(other, int(bs)))
        efficiency_roof[bs] = ratio(comparison["ratio"], roof[bs])
    return {
        "achieved": achieved,
        "efficiency": efficiency,
        "ideal_roofline": roof,
        "efficiency_roofline": efficiency_roof,
    }


def headline(entry: dict[str, Any], batch_size: int = 1) -> dict[str, Any] | None:
    """The user-facing speedup of one backend entry at ``batch_size``: ratio, interval, verdict (or None)."""
    point = (entry.get("achieved") or {}).get(str(batch_size))
    if not point or point.get("status", "ok") != "ok":
        return None
    keys = ("ratio", "low", "high", "verdict", "aa_spread", "flags")
    return {"batch_size": batch_size, **{k: point.get(k) for k in keys}}


def compare(
    dense: dict[str, Any],
    other: dict[str, Any],
    interleaved: dict[str, dict[str, Any]] | None = None,
    execution: str | None = None,
) -> dict[str, Any]:
    """Ideal (FLOPs, effective FLOPs, roofline) and interleaved achieved speedup of ``other`` against ``dense``.

    ``interleaved`` maps a backend name to :func:`harness.measure.compare_interleaved`'s entry for it.
    """
    ideal = ratio(dense["flops"]["flops"], other["flops"]["flops"])
    impossible = cannot_be_faster(ideal, execution)
    per_backend: dict[str, Any] = {}
    for name, entry in other["backends"].items():
        measured = (interleaved or {}).get(name) or {"status": "skipped", "reason": "no interleaved comparison"}
        row: dict[str, Any] = {"status": measured.get("status", "ok")}
        if row["status"] != "ok":
            row["reason"] = measured.get("reason") or measured.get("error")
        row.update(_achieved(measured, ideal, impossible, dense, other))
        row["headline_bs1"] = headline(row, 1)
        row["separate_measurements"] = _separate(dense["backends"].get(name, {}), entry)
        per_backend[name] = row
    return {
        "execution": execution,
        "ideal_flops": ideal,
        "ideal_effective_flops": ratio(dense["flops"].get("effective_flops"), other["flops"].get("effective_flops")),
        "ideal_roofline_bs1": ratio(_roofline_s(dense, 1), _roofline_s(other, 1)),
        "cannot_be_faster": impossible,
        "backends": per_backend,
    }


def speedup_table(
    baseline: dict[str, Any],
    compressed: dict[str, Any],
    variants: dict[str, dict[str, Any]],
    interleaved: dict[str, dict[str, dict[str, Any]]],
    execution: str | None = None,
) -> dict[str, Any]:
    """Speedup of the compressed model (labelled with its ``execution``) and of each variant against the baseline.

    ``interleaved`` maps 'compressed' and each variant name to its per-backend interleaved comparisons. Variants carry
    no execution label of their own: they are never the executed model (the masked net, the fake-quant twin).
    """
    table = {"compressed": compare(baseline, compressed, interleaved.get("compressed"), execution)}
    for name, measured in variants.items():
        table[name] = compare(baseline, measured, interleaved.get(name))
    return table
