"""Speedup accounting (METHODOLOGY §8): ideal speedup from FLOPs against achieved speedup per backend and batch."""

from __future__ import annotations

from typing import Any


def _p50(entry: dict[str, Any]) -> float | None:
    if entry.get("status") != "ok":
        return None
    return entry["single_stream"]["host_latency"]["p50"]


def _batch_latency(entry: dict[str, Any], batch_size: int) -> float | None:
    if entry.get("status") != "ok":
        return None
    for point in entry["offline"]["sweep"]:
        if point["batch_size"] == batch_size:
            return point["latency_ms"]
    return None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def compare(dense: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Ideal (FLOPs) and achieved (latency) speedup of ``other`` against ``dense`` on every shared backend."""
    ideal = ratio(dense["flops"]["flops"], other["flops"]["flops"])
    per_backend: dict[str, Any] = {}
    for name, entry in other["backends"].items():
        base = dense["backends"].get(name, {})
        achieved_bs1 = ratio(_p50(base), _p50(entry))
        batches = {}
        if entry.get("status") == "ok" and base.get("status") == "ok":
            for point in entry["offline"]["sweep"]:
                bs = point["batch_size"]
                achieved = ratio(_batch_latency(base, bs), point["latency_ms"])
                batches[str(bs)] = {"achieved": achieved, "efficiency": ratio(achieved, ideal)}
        per_backend[name] = {
            "achieved_bs1_p50": achieved_bs1,
            "efficiency_bs1": ratio(achieved_bs1, ideal),
            "by_batch": batches,
        }
    return {"ideal_flops": ideal, "backends": per_backend}


def speedup_table(
    baseline: dict[str, Any], compressed: dict[str, Any], variants: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    table = {"compressed": compare(baseline, compressed)}
    for name, measured in variants.items():
        table[name] = compare(baseline, measured)
    return table
