"""Run records as table rows, for ``export``, ``compare``, the CLI summary and the HTML report.

- :func:`flatten` (wide): one row per run, the headline figures of its first measured backend (eager when measured).
- :func:`long_rows` (long): one row per run x model (baseline / compressed / variant) x backend x batch size.

Every speedup in a row is the interleaved one (one process, bootstrap interval, A/A verdict; see
:mod:`harness.speedup`); the ratio of two separate measurements is never a column here. Units are in the column
names; lists (flags) are joined with ';'; missing values are None (empty in CSV, null in JSON).
"""

from __future__ import annotations

import json
from typing import Any

PRIMARY_METRICS = ("top1", "accuracy", "perplexity", "bits_per_char", "bits_per_token", "wer")
FLAG_KEYS = ("unstable", "below_methodology_minimums", "single_process", "below_minimums", "throttled")


def get(data: Any, path: str) -> Any:
    """``data['a']['b']`` for ``path`` 'a.b', or None where a key is missing."""
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def metric_name(record: dict[str, Any]) -> str | None:
    """The workload's primary metric (recorded since the workload describes it; inferred for older records)."""
    named = get(record, "workload.metric")
    if named:
        return named
    accuracy = get(record, "compressed.accuracy") or get(record, "baseline.accuracy") or {}
    return next((k for k in PRIMARY_METRICS if k in accuracy), next(iter(accuracy), None))


def higher_is_better(record: dict[str, Any]) -> bool | None:
    known = get(record, "workload.higher_is_better")
    if known is not None:
        return bool(known)
    metric = metric_name(record)
    return (
        None
        if metric is None
        else metric not in ("perplexity", "bits_per_char", "bits_per_token", "wer", "cer", "loss")
    )


def metric_value(record: dict[str, Any], which: str) -> float | None:
    metric = metric_name(record)
    return get(record, f"{which}.accuracy.{metric}") if metric else None


def headline_backend(record: dict[str, Any], which: str = "compressed") -> str | None:
    """The backend whose figures stand for the run: eager when it was measured, else the first one measured."""
    backends = get(record, f"{which}.backends") or {}
    ok = [k for k, v in backends.items() if v.get("status") == "ok"]
    return "eager" if "eager" in ok else (ok[0] if ok else None)


def _models(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    models = {"baseline": record.get("baseline") or {}, "compressed": record.get("compressed") or {}}
    models.update(record.get("variants") or {})
    return {k: v for k, v in models.items() if v}


def _flags(*entries: Any) -> list[str]:
    flags: set[str] = set()
    for entry in entries:
        if isinstance(entry, dict):
            flags.update(entry.get("flags") or [])
            for sub in ("host_latency", "gpu_compute_time"):
                flags.update(get(entry, f"{sub}.flags") or [])
    return sorted(flags)


def run_flags(record: dict[str, Any]) -> list[str]:
    """Measurement-quality flags of every measured backend of the run (a run is as trustworthy as its worst part)."""
    flags: set[str] = set(record.get("flags") or [])
    for measured in _models(record).values():
        for entry in (measured.get("backends") or {}).values():
            single = entry.get("single_stream") or {}
            flags.update(_flags(single))
            if single.get("single_process"):
                flags.add("single_process")
            for point in get(entry, "offline.sweep") or []:
                flags.update(point.get("flags") or [])
    return sorted(flags)


def _energy(entry: dict[str, Any], scenario: str) -> tuple[float | None, str | None]:
    """(mJ per inference, status text) of the first energy source that measured; else its reason."""
    sources = get(entry, f"energy.{scenario}") or {}
    reasons = []
    for key in ("gpu", "cpu"):
        source = sources.get(key)
        if isinstance(source, dict):
            if source.get("status") == "ok":
                return source.get("mj_per_inference"), f"{key}: {source.get('label', 'ok')}"
            reasons.append(f"{key} {source.get('status')}: {source.get('reason')}")
    return None, "; ".join(reasons) or None


def _identity(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("config", {})
    recipe = get(record, "workload.recipe")
    return {
        "run_id": record.get("run_id"),
        "config_hash": record.get("config_hash"),
        "workload": config.get("workload"),
        "dataset": config.get("dataset"),
        "compressor": config.get("compressor"),
        "compressor_args": ";".join(f"{k}={v}" for k, v in sorted((config.get("compressor_args") or {}).items())),
        "profile": config.get("profile"),
        "measure_profile": config.get("measure"),
        "seed": config.get("seed"),
        "device": config.get("device"),
        "recipe": json.dumps(recipe, sort_keys=True) if recipe else None,
        "workload_options": json.dumps(get(record, "workload.options") or {}, sort_keys=True),
        "commit": get(record, "commit_info.id"),
        "commit_dirty": get(record, "commit_info.dirty"),
        "started_at": record.get("started_at"),
        "status": record.get("status"),
        "error": get(record, "error.message"),
        "execution": get(record, "compressor.execution"),
        "metric": metric_name(record),
        "higher_is_better": higher_is_better(record),
    }


def _speedup_columns(point: dict[str, Any] | None, prefix: str = "speedup") -> dict[str, Any]:
    point = point or {}
    return {
        f"{prefix}": point.get("ratio"),
        f"{prefix}_low": point.get("low"),
        f"{prefix}_high": point.get("high"),
        f"{prefix}_verdict": point.get("verdict"),
        f"{prefix}_aa_spread": point.get("aa_spread"),
    }


def long_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per model x backend x batch size (batch 1 = SingleStream, others = the Offline sweep)."""
    identity = _identity(record)
    rows = []
    for model, measured in _models(record).items():
        speedup = get(record, f"speedup.{model}") or {}
        common = {
            **identity,
            "model": model,
            "metric_value": get(measured, f"accuracy.{identity['metric']}") if identity["metric"] else None,
            "params": get(measured, "size.params"),
            "flops": get(measured, "flops.flops"),
            "size_bytes": get(measured, "size.state_dict_bytes"),
            "theoretical_bytes": get(measured, "size.theoretical_bytes"),
            "ideal_speedup_flops": speedup.get("ideal_flops"),
        }
        for backend, entry in (measured.get("backends") or {}).items():
            rows.extend(_backend_rows(common, backend, entry, get(speedup, f"backends.{backend}") or {}))
    return rows


def _backend_rows(
    common: dict[str, Any], backend: str, entry: dict[str, Any], speedup: dict[str, Any]
) -> list[dict[str, Any]]:
    base = {**common, "backend": backend, "backend_status": entry.get("status")}
    if entry.get("status") != "ok":
        return [{**base, "batch_size": None, "backend_error": entry.get("reason") or entry.get("error")}]
    single = entry.get("single_stream") or {}
    rows = []
    for point in get(entry, "offline.sweep") or []:
        bs = point["batch_size"]
        row = {**base, "batch_size": bs, "throughput_samples_per_s": point.get("samples_per_s")}
        row["batch_latency_ms"] = point.get("latency_ms")
        if bs == 1:
            row.update(_single_stream_columns(single))
            row["energy_mj_per_query"], row["energy_status"] = _energy(entry, "single_stream")
        elif bs == get(entry, "energy.offline.batch_size"):
            mj, row["energy_status"] = _energy(entry, "offline")
            row["energy_mj_per_sample"] = mj
        achieved = get(speedup, f"achieved.{bs}")
        row.update(_speedup_columns(achieved))
        row["efficiency"] = get(speedup, f"efficiency.{bs}")
        row["flags"] = ";".join(sorted({*_flags(point), *(achieved or {}).get("flags", [])}))
        rows.append(row)
    return rows


def _single_stream_columns(single: dict[str, Any]) -> dict[str, Any]:
    host = single.get("host_latency") or {}
    processes = single.get("across_processes") or {}
    p50 = processes.get("p50_median_ms")
    ci = host.get("p90_ci") or {}
    return {
        "latency_p50_ms": p50 if p50 is not None else host.get("p50"),
        "latency_p90_ms": single.get("headline_p90_ms", host.get("p90")),
        "latency_p90_low_ms": ci.get("low"),
        "latency_p90_high_ms": ci.get("high"),
        "latency_p99_ms": host.get("p99"),
        "latency_cv": host.get("cv"),
        "gpu_compute_p50_ms": get(single, "gpu_compute_time.p50"),
        "latency_processes": processes.get("processes") if processes.get("status") == "ok" else 1,
        "latency_flags": ";".join(_flags(single) + (["single_process"] if single.get("single_process") else [])),
    }


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """The wide per-run summary: identity, both models' headline figures and the interleaved speedup at batch 1."""
    row = _identity(record)
    backend = headline_backend(record)
    row["backend"] = backend
    for which in ("baseline", "compressed"):
        entry = get(record, f"{which}.backends.{backend}") if backend else None
        single = _single_stream_columns((entry or {}).get("single_stream") or {}) if entry else {}
        row[f"{which}.metric_value"] = metric_value(record, which)
        row[f"{which}.accuracy"] = row[f"{which}.metric_value"]
        row[f"{which}.latency_p50_ms"] = single.get("latency_p50_ms")
        row[f"{which}.latency_p90_ms"] = single.get("latency_p90_ms")
        row[f"{which}.latency_p90_low_ms"] = single.get("latency_p90_low_ms")
        row[f"{which}.latency_p90_high_ms"] = single.get("latency_p90_high_ms")
        row[f"{which}.throughput"] = get(entry, "offline.best_samples_per_s")
        row[f"{which}.energy_mj_per_query"], row[f"{which}.energy_status"] = _energy(entry or {}, "single_stream")
        row[f"{which}.params"] = get(record, f"{which}.size.params")
        row[f"{which}.flops"] = get(record, f"{which}.flops.flops")
        row[f"{which}.size_bytes"] = get(record, f"{which}.size.state_dict_bytes")
        row[f"{which}.theoretical_bytes"] = get(record, f"{which}.size.theoretical_bytes")
    row["speedup.ideal_flops"] = get(record, "speedup.compressed.ideal_flops")
    point = get(record, f"speedup.compressed.backends.{backend}.achieved.1") if backend else None
    row.update(_speedup_columns(point, "speedup.bs1"))
    row["speedup.efficiency_bs1"] = get(record, f"speedup.compressed.backends.{backend}.efficiency.1")
    row["flags"] = ";".join(run_flags(record))
    return row


EXPORT_COLUMNS = (
    "run_id",
    "workload",
    "dataset",
    "compressor",
    "compressor_args",
    "status",
    "error",
    "execution",
    "metric",
    "higher_is_better",
    "backend",
    "baseline.accuracy",
    "compressed.accuracy",
    "baseline.latency_p90_ms",
    "compressed.latency_p50_ms",
    "compressed.latency_p90_ms",
    "compressed.latency_p90_low_ms",
    "compressed.latency_p90_high_ms",
    "compressed.throughput",
    "compressed.energy_mj_per_query",
    "compressed.params",
    "compressed.flops",
    "compressed.size_bytes",
    "compressed.theoretical_bytes",
    "speedup.ideal_flops",
    "speedup.bs1",
    "speedup.bs1_low",
    "speedup.bs1_high",
    "speedup.bs1_verdict",
    "speedup.efficiency_bs1",
    "flags",
    "config_hash",
    "measure_profile",
    "seed",
    "recipe",
    "commit",
    "started_at",
)
