"""``ls``: list workloads, compressors, backends or datasets."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import formatter

EXAMPLES = """Examples:
  python -m harness ls workloads
  python -m harness ls compressors
  python -m harness ls workloads --pattern 'resnet*'
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("ls", help="list registered plug-ins", epilog=EXAMPLES, formatter_class=formatter())
    parser.add_argument("what", nargs="?", choices=["workloads", "compressors", "backends", "datasets", "runs"])
    parser.add_argument("--pattern", help="shell-style filter, e.g. 'resnet*' (runs: matches the run id)")
    parser.add_argument("--results", default="results", help="results directory for 'ls runs' (default results/)")
    parser.add_argument("--refresh-catalog", action="store_true", help=argparse.SUPPRESS)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.cli.catalog import CATALOGUED, cached_rows, write_catalog

    if args.refresh_catalog:
        print(f"wrote {write_catalog({what: LISTERS[what](None) for what in CATALOGUED})}")
        return 0
    if args.what is None:
        raise ValueError("ls needs what to list: workloads, compressors, backends, datasets or runs")
    if args.what == "runs":
        rows = _runs(args.pattern, args.results)
    else:
        rows = cached_rows(args.what, args.pattern) or LISTERS[args.what](args.pattern)
        _warn_shadowed(args.what)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))] if rows else []
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _workloads(pattern: str | None) -> list[tuple]:
    from workloads import WORKLOADS

    rows: list[tuple] = [("NAME", "PAPER", "KIND", "PARAMS", "DEFAULT DATASET", "DATASETS")]
    for name in WORKLOADS.names(pattern):
        try:
            info = WORKLOADS.get(name).info
        except Exception as exc:  # noqa: BLE001 - a broken plug-in is listed as broken, the rest still listed
            rows.append(_broken(name, exc, len(rows[0])))
            continue
        params = next((f"{r.value / 1e6:.2f}M" for r in info.references if r.metric == "params"), "-")
        rows.append((name, info.paper, info.kind, params, info.default_dataset, ",".join(info.datasets)))
    return rows


def _broken(name: str, exc: Exception, width: int) -> tuple:
    return (name, f"BROKEN: {exc}"[:160], *["-"] * (width - 2))


def _compressors(pattern: str | None) -> list[tuple]:
    from compressors import COMPRESSORS

    rows: list[tuple] = [("NAME", "PAPER", "KIND", "FITS", "OPTIONS")]
    for name in COMPRESSORS.names(pattern):
        try:
            cls = COMPRESSORS.get(name)
        except Exception as exc:  # noqa: BLE001 - a broken plug-in is listed as broken, the rest still listed
            rows.append(_broken(name, exc, len(rows[0])))
            continue
        rows.append(
            (
                name,
                cls.info.paper or "-",
                cls.info.kind,
                ",".join(cls.info.supports),
                ",".join(sorted(cls.Config.field_names())) or "-",
            )
        )
    return rows


def _backends(pattern: str | None) -> list[tuple]:
    from harness.backends import BACKENDS, BackendUnavailable

    rows: list[tuple] = [("NAME", "CPU")]
    for name in BACKENDS.names(pattern):
        try:
            BACKENDS.get(name)().check_available("cpu")
            status = "available"
        except BackendUnavailable as exc:
            status = f"unavailable: {exc}"
        rows.append((name, status))
    return rows


def _datasets(pattern: str | None) -> list[tuple]:
    from workloads.data.catalog import dataset_rows

    return dataset_rows(pattern)


def _warn_shadowed(what: str) -> None:
    """Plug-ins that reuse a built-in name are ignored by the registry; say so (reads entry points, imports nothing)."""
    import sys

    from harness.cli.catalog import shadowing_plugins

    for line in shadowing_plugins(what):
        print(f"warning: {line}", file=sys.stderr)


def _runs(pattern: str | None, results: str) -> list[tuple]:
    """Stored runs, oldest first: status, what ran, the metric and the interleaved bs-1 speedup verdict."""
    import fnmatch
    import sys

    from harness.report.rows import flatten
    from harness.store import ResultsStore

    loaded = ResultsStore(results).load_all()
    for error in loaded.errors:
        print(f"warning: skipped unreadable record: {error}", file=sys.stderr)
    rows: list[tuple] = [("RUN", "STATUS", "WORKLOAD", "COMPRESSOR", "DATASET", "SEED", "METRIC", "SPEEDUP BS1")]
    for record in sorted(loaded.records, key=lambda r: str(r.get("started_at"))):
        row = flatten(record)
        if pattern and not fnmatch.fnmatch(str(row["run_id"]), f"*{pattern}*"):
            continue
        value = row.get("compressed.metric_value")
        metric = f"{row['metric']}={value:.4g}" if value is not None else "-"
        speedup = f"{row['speedup.bs1']:.3f}x {row['speedup.bs1_verdict']}" if row.get("speedup.bs1") else "-"
        rows.append(
            (
                row["run_id"],
                row["status"],
                row["workload"],
                row["compressor"],
                row["dataset"],
                row["seed"],
                metric,
                speedup,
            )
        )
    return rows


LISTERS = {"workloads": _workloads, "compressors": _compressors, "backends": _backends, "datasets": _datasets}
