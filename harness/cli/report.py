"""``report``: a self-contained plotly HTML report of every run in the store."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli.common import formatter

EXAMPLES = """Examples:
  python -m harness report --out results/report.html
  python -m harness report --results /tmp/results --out /tmp/report.html
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("report", help="write the HTML report", epilog=EXAMPLES, formatter_class=formatter())
    parser.add_argument("--results", default="results", help="results directory (default results/)")
    parser.add_argument("--out", default=None, help="output HTML file (default RESULTS/report.html)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.report.html import build_report
    from harness.store import ResultsStore

    loaded = ResultsStore(args.results).load_all()
    for error in loaded.errors:
        print(f"warning: skipped unreadable record: {error}", file=sys.stderr)
    out = build_report(loaded, args.out or f"{args.results}/report.html")
    print(f"wrote {out} ({len(loaded.records)} runs, {len(loaded.errors)} unreadable)")
    return 0
