"""The end-of-run summary: one small table per run, built from :func:`harness.report.rows.long_rows`."""

from __future__ import annotations

from typing import Any


def _num(value: Any, fmt: str = ".4g") -> str:
    return "-" if value is None else format(value, fmt)


def _latency(row: dict[str, Any]) -> str:
    p90 = row.get("latency_p90_ms")
    if p90 is None:
        return f"p50 {_num(row.get('latency_p50_ms'), '.3f')}"
    low, high = row.get("latency_p90_low_ms"), row.get("latency_p90_high_ms")
    interval = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{p90:.3f}{interval}"


def _speedup(row: dict[str, Any]) -> str:
    if row["model"] == "baseline":
        return "(dense)"
    if row.get("speedup") is None:
        return "not measured"
    return f"{row['speedup']:.3f}x [{row['speedup_low']:.3f}, {row['speedup_high']:.3f}] {row['speedup_verdict']}"


def format_table(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table)


def summary_table(record: dict[str, Any]) -> str:
    """Metric, bs-1 latency p90 with its interval, best throughput, size and the interleaved bs-1 speedup."""
    from harness.report.rows import long_rows

    metric = record.get("workload", {}).get("metric") or "metric"
    header = [
        "model",
        "backend",
        metric,
        "p90 ms [95% CI]",
        "samples/s",
        "state_dict bytes",
        "speedup bs1 (interleaved)",
    ]
    table = [header]
    rows = long_rows(record)
    best: dict[tuple[str, str], float] = {}
    for row in rows:
        key = (row["model"], row["backend"])
        if row.get("throughput_samples_per_s") is not None:
            best[key] = max(best.get(key, 0.0), row["throughput_samples_per_s"])
    for row in rows:
        if row.get("batch_size") not in (1, None):
            continue
        key = (row["model"], row["backend"])
        if row.get("backend_status") != "ok":
            cells = [row["model"], row["backend"], _num(row.get("metric_value")), row["backend_status"] or "-"]
            table.append([*cells, "-", "-", (row.get("backend_error") or "")[:60]])
            continue
        table.append(
            [
                row["model"],
                row["backend"],
                _num(row.get("metric_value")),
                _latency(row),
                _num(best.get(key), ".0f"),
                _num(row.get("size_bytes"), ","),
                _speedup(row),
            ]
        )
    return format_table(table)
