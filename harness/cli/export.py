"""``export``: the store's runs as CSV or JSON on standard output.

``--layout wide`` (default): one row per run (identity, metric name and direction, headline figures, interleaved
speedup at batch 1 with its interval and verdict, flags). ``--layout long``: one row per run x model x backend x batch
size. ``--all-columns``: every field of every record, flattened with ``pandas.json_normalize``. Floats keep full
precision (shortest round-trip repr); missing values are empty in CSV and null in JSON, never NaN.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from harness.cli.common import formatter

EXAMPLES = """Examples:
  python -m harness export --format csv > runs.csv
  python -m harness export --layout long --format csv > measurements.csv
  python -m harness export --results /tmp/results --format json --all-columns
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("export", help="print runs as CSV/JSON", epilog=EXAMPLES, formatter_class=formatter())
    parser.add_argument("--results", default="results", help="results directory (default results/)")
    parser.add_argument("--format", choices=["csv", "json"], default="csv")
    parser.add_argument(
        "--layout", choices=["wide", "long"], default="wide", help="wide: a row per run; long: per model/backend/batch"
    )
    parser.add_argument("--all-columns", action="store_true", help="every field of the records (json_normalize)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.store import ResultsStore

    loaded = ResultsStore(args.results).load_all()
    for error in loaded.errors:
        print(f"warning: skipped unreadable record: {error}", file=sys.stderr)
    rows = table_rows(loaded.records, args.layout, args.all_columns)
    if args.format == "csv":
        write_csv(rows)
    else:
        print(json.dumps(rows, indent=2, allow_nan=False))
    return 0


def table_rows(records: list[dict[str, Any]], layout: str, all_columns: bool) -> list[dict[str, Any]]:
    """The rows to export, with NaN and infinities replaced by None and lists joined with ';'."""
    import pandas as pd

    from harness.report.rows import EXPORT_COLUMNS, flatten, long_rows

    if all_columns:
        frame = pd.json_normalize(records)
        rows = [dict(zip(frame.columns, values, strict=True)) for values in frame.itertuples(index=False)]
    elif layout == "long":
        rows = [row for record in records for row in long_rows(record)]
    else:
        rows = [{k: flatten(r).get(k) for k in EXPORT_COLUMNS} for r in records]
    return [{k: _plain(v) for k, v in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return _plain(value.item())
    return value


def write_csv(rows: list[dict[str, Any]]) -> None:
    import csv

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    writer = csv.DictWriter(sys.stdout, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
