"""Flatten run records into one row per run (used by ``export`` and the HTML report)."""

from __future__ import annotations

from typing import Any


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _primary_metric(record: dict[str, Any], which: str) -> float | None:
    accuracy = _get(record, f"{which}.accuracy") or {}
    for key in ("top1", "accuracy", "perplexity", "bits_per_char", "wer"):
        if key in accuracy:
            return accuracy[key]
    return next(iter(accuracy.values()), None) if accuracy else None


def _eager_or_first(record: dict[str, Any], which: str) -> dict[str, Any]:
    backends = _get(record, f"{which}.backends") or {}
    ok = {k: v for k, v in backends.items() if v.get("status") == "ok"}
    return ok.get("eager") or next(iter(ok.values()), {})


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    config = record.get("config", {})
    row: dict[str, Any] = {
        "run_id": record.get("run_id"),
        "workload": config.get("workload"),
        "dataset": config.get("dataset"),
        "compressor": config.get("compressor"),
        "profile": config.get("profile"),
        "seed": config.get("seed"),
        "device": config.get("device"),
        "status": record.get("status"),
        "error": _get(record, "error.message"),
        "execution": _get(record, "compressor.execution"),
        "compressor_args": ";".join(f"{k}={v}" for k, v in sorted(config.get("compressor_args", {}).items())),
    }
    for which in ("baseline", "compressed"):
        backend = _eager_or_first(record, which)
        row[f"{which}.accuracy"] = _primary_metric(record, which)
        # report-grade records carry the median over separate processes; others one process's figures
        p50 = _get(backend, "single_stream.across_processes.p50_median_ms")
        row[f"{which}.latency_p50_ms"] = p50 if p50 is not None else _get(backend, "single_stream.host_latency.p50")
        p90 = _get(backend, "single_stream.headline_p90_ms")
        row[f"{which}.latency_p90_ms"] = p90 if p90 is not None else _get(backend, "single_stream.host_latency.p90")
        row[f"{which}.throughput"] = _get(backend, "offline.best_samples_per_s")
        row[f"{which}.params"] = _get(record, f"{which}.size.params")
        row[f"{which}.flops"] = _get(record, f"{which}.flops.flops")
        row[f"{which}.size_bytes"] = _get(record, f"{which}.size.state_dict_bytes")
        row[f"{which}.theoretical_bytes"] = _get(record, f"{which}.size.theoretical_bytes")
    row["speedup.ideal_flops"] = _get(record, "speedup.compressed.ideal_flops")
    row["speedup.achieved_bs1"] = _get(record, "speedup.compressed.backends.eager.achieved_bs1_p50")
    return row


EXPORT_COLUMNS = (
    "run_id",
    "workload",
    "dataset",
    "compressor",
    "status",
    "baseline.accuracy",
    "compressed.accuracy",
    "compressed.latency_p50_ms",
    "compressed.throughput",
    "compressed.params",
    "compressed.flops",
    "compressed.size_bytes",
)
