"""Trade-off points of the report: one per run x model (compressed, each variant, the dense baseline), and their
aggregation over replicate seeds.

Replicates are runs of the same workload, dataset, compressor, compressor_args, profile and recipe that differ only in
their seed. They are shown as one point at the mean of each coordinate, with a min-max interval across the runs
(:data:`INTERVAL`); the individual runs are listed in the hover text. The dense baselines of a workload, dataset and
recipe are aggregated the same way (one star): every run re-measures its seed's baseline, so the star's members are
all those measurements, of as many models as there are seeds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from harness.report.rows import get, headline_backend, higher_is_better, metric_name

INTERVAL = "min-max across the replicate runs"
FLOAT_BITS = 32.0
P90_MIN_SAMPLES = 64
QUALITY_FLAGS = ("faster_than_possible", "unstable", "throttled", "single_process", "below_methodology_minimums")
METRIC_UNITS = {
    "top1": "%",
    "top5": "%",
    "accuracy": "%",
    "f1": "%",
    "wer": "%",
    "cer": "%",
    "mcc": "x100",
    "perplexity": "ppl",
    "bits_per_char": "bits/char",
    "loss": "nats",
}
SIMULATED_VARIANTS = ("fake_quant", "simulated")


@dataclass
class Point:
    """One measured model of one run, with the coordinates the trade-off plots use (None where not measured)."""

    run_id: str
    workload: str
    dataset: str | None
    compressor: str
    compressor_args: str
    seed: Any
    model: str
    execution: str
    backend: str | None
    metric: float | None
    latency_ms: float | None = None
    latency_low: float | None = None
    latency_high: float | None = None
    energy_mj: float | None = None
    energy_note: str | None = None
    latency_note: str | None = None
    size_bytes: float | None = None
    theoretical_bytes: float | None = None
    flops: float | None = None
    bops: float | None = None
    flags: list[str] = field(default_factory=list)
    group: tuple[Any, ...] = ()

    @property
    def is_baseline(self) -> bool:
        return self.model == "baseline"

    @property
    def label(self) -> str:
        if self.is_baseline:
            return "dense baseline"
        name = self.compressor + (f" [{self.compressor_args}]" if self.compressor_args else "")
        return name if self.model == "compressed" else f"{name} ({self.model})"


@dataclass
class Aggregate:
    """Replicates of one configuration: the mean of each coordinate and its min-max across the members."""

    members: list[Point]

    @property
    def first(self) -> Point:
        return self.members[0]

    def mean(self, attr: str) -> float | None:
        values = [getattr(p, attr) for p in self.members if getattr(p, attr) is not None]
        return fmean(values) if values else None

    def span(self, attr: str) -> tuple[float, float] | None:
        values = [getattr(p, attr) for p in self.members if getattr(p, attr) is not None]
        return (min(values), max(values)) if len(values) > 1 else None

    @property
    def flags(self) -> list[str]:
        return sorted({f for p in self.members for f in p.flags})


def metric_label(record: dict[str, Any]) -> str:
    """The metric with its unit and direction, e.g. 'top1 (%) ↑'."""
    metric = metric_name(record) or "metric"
    unit = get(record, "workload.metric_unit") or METRIC_UNITS.get(metric)
    arrow = {True: " ↑", False: " ↓", None: ""}[higher_is_better(record)]
    return f"{metric}{f' ({unit})' if unit else ''}{arrow}"


def model_execution(record: dict[str, Any], model: str) -> str:
    """'dense' / 'executed' / 'simulated' for the compressed model; variants never ran a low-bit or sparse kernel."""
    if model == "baseline":
        return "baseline"
    if model == "compressed":
        return get(record, "compressor.execution") or "dense"
    return "simulated" if any(s in model for s in SIMULATED_VARIANTS) else "dense"


def _latency_flags(single: dict[str, Any]) -> set[str]:
    flags = set(single.get("flags") or []) | set(get(single, "host_latency.flags") or [])
    if single.get("single_process"):
        flags.add("single_process")
    return flags


def model_flags(record: dict[str, Any], model: str, backend: str | None) -> list[str]:
    """Measurement-quality flags of one model's headline backend, with its interleaved speedup's flags."""
    entry = get(record, f"{_where(model)}.backends.{backend}") if backend else None
    flags = _latency_flags((entry or {}).get("single_stream") or {})
    for point in get(entry, "offline.sweep") or []:
        flags.update(point.get("flags") or [])
    for achieved in (get(record, f"speedup.{model}.backends.{backend}.achieved") or {}).values():
        flags.update(achieved.get("flags") or [])
    return sorted(flags)


def _where(model: str) -> str:
    return model if model in ("baseline", "compressed") else f"variants.{model}"


def energy_of(entry: dict[str, Any] | None) -> tuple[float | None, str | None]:
    """(mJ per inference at batch 1, None) from the first source that measured, else (None, 'unavailable (reasons)')."""
    sources = get(entry, "energy.single_stream") or {}
    reasons = []
    for key in ("gpu", "cpu"):
        source = sources.get(key)
        if isinstance(source, dict) and source.get("status") == "ok" and source.get("mj_per_inference") is not None:
            return float(source["mj_per_inference"]), None
        if isinstance(source, dict):
            reasons.append(f"{key} {source.get('status')}: {source.get('reason')}")
    return None, "; ".join(reasons) or "not measured"


def latency_note(entry: dict[str, Any] | None) -> str:
    """Why a backend entry has no bs-1 p90 (the methodology publishes p90 only from 64 samples)."""
    if not entry or entry.get("status") != "ok":
        return f"backend {(entry or {}).get('status', 'not measured')}: {(entry or {}).get('reason', '')}".rstrip(": ")
    n = get(entry, "single_stream.host_latency.n")
    return f"p90 not published: n={n} < 64 samples" if n is not None and n < P90_MIN_SAMPLES else "p90 not measured"


def model_bops(measured: dict[str, Any]) -> float | None:
    """Whole-model BOPs: the quantized layers' MACs x w bits x a bits, every other MAC at 32 x 32 bits."""
    macs = get(measured, "flops.macs")
    bops = get(measured, "accounting.bops")
    if macs is None or not isinstance(bops, dict):
        return None
    quantized_macs = sum(layer.get("macs", 0.0) for layer in (bops.get("per_layer") or {}).values())
    return float(bops.get("bops") or 0.0) + max(float(macs) - quantized_macs, 0.0) * FLOAT_BITS * FLOAT_BITS


def _group(record: dict[str, Any], model: str) -> tuple[Any, ...]:
    config = record.get("config") or {}
    recipe = json.dumps(get(record, "workload.recipe") or config.get("recipe_overrides") or {}, sort_keys=True)
    if model == "baseline":
        return ("baseline", config.get("workload"), config.get("dataset"), recipe)
    args = json.dumps(config.get("compressor_args") or {}, sort_keys=True)
    key = (config.get("workload"), config.get("dataset"), config.get("compressor"), args, config.get("profile"))
    return (model, *key, config.get("measure"), recipe)


def model_point(record: dict[str, Any], model: str) -> Point | None:
    """The trade-off point of ``model`` ('baseline', 'compressed' or a variant name) of one run, or None."""
    measured = get(record, _where(model))
    if not isinstance(measured, dict) or not measured:
        return None
    config = record.get("config") or {}
    backend = headline_backend(record, _where(model))
    entry = get(measured, f"backends.{backend}") if backend else None
    single = (entry or {}).get("single_stream") or {}
    ci = get(single, "host_latency.p90_ci") or {}
    metric = metric_name(record)
    energy, note = energy_of(entry)
    latency = single.get("headline_p90_ms", get(single, "host_latency.p90"))
    return Point(
        run_id=str(record.get("run_id")),
        workload=str(config.get("workload")),
        dataset=config.get("dataset"),
        compressor=str(config.get("compressor")),
        compressor_args=";".join(f"{k}={v}" for k, v in sorted((config.get("compressor_args") or {}).items())),
        seed=config.get("seed"),
        model=model,
        execution=model_execution(record, model),
        backend=backend,
        metric=get(measured, f"accuracy.{metric}") if metric else None,
        latency_ms=latency,
        latency_note=None if latency is not None else latency_note(entry),
        latency_low=ci.get("low"),
        latency_high=ci.get("high"),
        energy_mj=energy,
        energy_note=note,
        size_bytes=get(measured, "size.state_dict_bytes"),
        theoretical_bytes=get(measured, "size.theoretical_bytes"),
        flops=get(measured, "flops.flops"),
        bops=model_bops(measured),
        flags=model_flags(record, model, backend),
        group=_group(record, model),
    )


def record_points(record: dict[str, Any]) -> list[Point]:
    """Every model of an ok run: baseline, compressed, then the variants."""
    if record.get("status") != "ok":
        return []
    models = ["baseline", "compressed", *sorted(record.get("variants") or {})]
    return [p for p in (model_point(record, m) for m in models) if p is not None]


def aggregate(points: list[Point]) -> list[Aggregate]:
    """Replicate groups in first-seen order, each member list sorted by seed."""
    groups: dict[tuple[Any, ...], list[Point]] = {}
    for point in points:
        groups.setdefault(point.group, []).append(point)
    return [Aggregate(sorted(members, key=lambda p: str(p.seed))) for members in groups.values()]
