"""``run``: one run (train or reuse the dense baseline, compress, measure, record)."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import add_run_arguments, cli_values, formatter, set_quiet

EXAMPLES = """Examples:
  python -m harness run --workload resnet50 --compressor none --profile tiny
  python -m harness run --workload resnet50 --dataset fashion-mnist --set recipe.epochs=2
  python -m harness run --workload resnet18 --compressor none --backend eager --measure quick --results /tmp/r
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("run", help="run one workload x compressor", epilog=EXAMPLES, formatter_class=formatter())
    add_run_arguments(parser, required=True)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.config import parse_set_items
    from harness.runner import execute
    from harness.suite_file import to_run_config

    set_quiet(args.quiet)
    cli = cli_values(args)
    cli["set_items"] = parse_set_items(args.set_items)
    config = to_run_config({}, cli)
    record = execute(config)
    _print_summary(record)
    return 0


def _print_summary(record: dict[str, Any]) -> None:
    from harness.cli.summary import summary_table
    from harness.report.rows import run_flags

    print(summary_table(record))
    flags = run_flags(record)
    if flags:
        print(f"measurement flags: {', '.join(flags)}")
