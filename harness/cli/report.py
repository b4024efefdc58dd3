"""``report``: a self-contained plotly HTML report of every run in the store (works offline).

Per workload: the metric against latency, energy, size, FLOPs and BOPs with Pareto fronts and the dense baseline,
ideal vs achieved (interleaved) speedup per backend and batch size, and compression energy with break-even; then the
failed / interrupted runs and a sortable, filterable table of every run.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli.common import formatter

EXAMPLES = """Examples:
  python -m harness report --out results/report.html
  python -m harness report --results /tmp/results --out /tmp/report.html
  python -m harness report --results /tmp/results --title "Pruning sweep, seeds 0-4"
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("report", help="write the HTML report", epilog=EXAMPLES, formatter_class=formatter())
    parser.add_argument("--results", default="results", help="results directory (default results/)")
    parser.add_argument("--out", default=None, help="output HTML file (default RESULTS/report.html)")
    parser.add_argument("--title", default="Compression benchmark report", help="page title")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.report.html import build_report
    from harness.store import ResultsStore

    loaded = ResultsStore(args.results).load_all()
    for error in loaded.errors:
        print(f"warning: skipped unreadable record: {error}", file=sys.stderr)
    out = build_report(loaded, args.out or f"{args.results}/report.html", title=args.title)
    not_ok = sum(1 for r in loaded.records if r.get("status") != "ok")
    print(f"wrote {out} ({len(loaded.records)} runs, {not_ok} not ok, {len(loaded.errors)} unreadable)")
    return 0
