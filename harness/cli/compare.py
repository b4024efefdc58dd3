"""``compare RUN_A RUN_B``: two stored runs side by side (pytest-benchmark's ``compare`` is the model).

Each run's speedup is the interleaved one against its own dense baseline, with its interval and verdict. Between the
two runs, exact quantities (metric, parameters, FLOPs, bytes) are given as deltas; latency and throughput deltas come
from separate measurements, so they are labelled as such and get no verdict (METHODOLOGY §9). Runs measured on
different machines, devices or measurement profiles are called out.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli.common import formatter

EXAMPLES = """Examples:
  python -m harness compare 20261201T2300-lenet3-none 20261201T2301-lenet3-taylor
  python -m harness compare lenet3-taylor-8043 lenet3-dsd --results /tmp/results
"""

DELTA_FIELDS = (
    ("compressed.metric_value", "metric", "exact"),
    ("compressed.params", "params", "exact"),
    ("compressed.flops", "FLOPs", "exact"),
    ("compressed.size_bytes", "state_dict bytes", "exact"),
    ("compressed.theoretical_bytes", "theoretical bytes", "exact"),
    ("compressed.latency_p90_ms", "p90 ms", "separate measurements"),
    ("compressed.throughput", "samples/s", "separate measurements"),
)


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("compare", help="compare two stored runs", epilog=EXAMPLES, formatter_class=formatter())
    parser.add_argument("run_a", help="run id (or a unique part of it)")
    parser.add_argument("run_b", help="run id (or a unique part of it)")
    parser.add_argument("--results", default="results", help="results directory (default results/)")
    parser.set_defaults(handler=handle)


def find_run(records: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The one record whose run id equals or contains ``key``; a clear error otherwise."""
    exact = [r for r in records if r.get("run_id") == key]
    matches = exact or [r for r in records if key in str(r.get("run_id"))]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ValueError(f"no run matches {key!r}; list the stored runs with 'python -m harness ls runs'")
    names = ", ".join(str(r.get("run_id")) for r in matches[:5])
    raise ValueError(f"{key!r} matches {len(matches)} runs ({names}, ...): give more of the run id")


def handle(args: argparse.Namespace) -> int:
    from harness.store import ResultsStore

    loaded = ResultsStore(args.results).load_all()
    for error in loaded.errors:
        print(f"warning: skipped unreadable record: {error}", file=sys.stderr)
    a, b = find_run(loaded.records, args.run_a), find_run(loaded.records, args.run_b)
    print(compare_text(a, b))
    return 0


def compare_text(a: dict[str, Any], b: dict[str, Any]) -> str:
    from harness.cli.summary import format_table
    from harness.report.rows import flatten

    ra, rb = flatten(a), flatten(b)
    lines = [f"A: {ra['run_id']} ({ra['status']})", f"B: {rb['run_id']} ({rb['status']})"]
    lines += [f"note: {n}" for n in _conditions(a, b)]
    table = [["", "A", "B", "B - A", "basis"]]
    for key, label, basis in DELTA_FIELDS:
        va, vb = ra.get(key), rb.get(key)
        delta = vb - va if isinstance(va, (int, float)) and isinstance(vb, (int, float)) else None
        table.append([label, _cell(va), _cell(vb), _cell(delta), basis])
    for row in (ra, rb):
        if row.get("speedup.bs1") is None:
            continue
        interval = f"[{row['speedup.bs1_low']:.3f}, {row['speedup.bs1_high']:.3f}]"
        verdict = f"{row['speedup.bs1']:.3f}x {interval} {row['speedup.bs1_verdict']}"
        name = "A" if row is ra else "B"
        table.append([f"{name} vs its dense", verdict, "", "", f"interleaved, {row['backend']}, bs 1"])
    return "\n".join(lines) + "\n" + format_table(table)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)


def _conditions(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """Differences in measurement conditions that make the two runs' timings incomparable."""
    notes = []
    from harness.report.rows import get

    checks = [("machine", "machine_info.hostname"), ("CPU", "machine_info.cpu"), ("device", "config.device")]
    checks.append(("measure profile", "config.measure"))
    for label, path in checks:
        va, vb = get(a, path), get(b, path)
        if va != vb:
            notes.append(f"different {label}: {va} vs {vb}; their timings are not comparable")
    if get(a, "config.workload") != get(b, "config.workload"):
        notes.append("different workloads: metric and size deltas compare different models")
    return notes
