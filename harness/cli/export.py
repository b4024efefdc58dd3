"""``export``: one flat row per run as CSV or JSON on standard output."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.cli.common import formatter

EXAMPLES = """Examples:
  python -m harness export --format csv > runs.csv
  python -m harness export --results /tmp/results --format json --all-columns
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("export", help="print runs as CSV/JSON", epilog=EXAMPLES, formatter_class=formatter())
    parser.add_argument("--results", default="results", help="results directory (default results/)")
    parser.add_argument("--format", choices=["csv", "json"], default="csv")
    parser.add_argument("--all-columns", action="store_true", help="every flattened column, not just the core set")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import pandas as pd

    from harness.report.rows import EXPORT_COLUMNS, flatten
    from harness.store import ResultsStore

    loaded = ResultsStore(args.results).load_all()
    for error in loaded.errors:
        print(f"warning: skipped unreadable record: {error}", file=sys.stderr)
    rows = [flatten(r) for r in loaded.records]
    frame = pd.DataFrame(rows, columns=None if args.all_columns else list(EXPORT_COLUMNS))
    if args.format == "csv":
        frame.to_csv(sys.stdout, index=False)
    else:
        print(json.dumps(json.loads(frame.to_json(orient="records")), indent=2))
    return 0
