"""``run``: one run (train or reuse the dense baseline, compress, measure, record)."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import add_run_arguments, cli_values, formatter
from harness.config import parse_set_items
from harness.suite_file import to_run_config

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
    from harness.runner import execute

    cli = cli_values(args)
    cli["set_items"] = parse_set_items(args.set_items)
    config = to_run_config({}, cli)
    record = execute(config)
    _print_summary(record)
    return 0


def _print_summary(record: dict[str, Any]) -> None:
    metric = record["workload"].get("metric") or next(iter(record["compressed"]["accuracy"]))
    for label in ("baseline", "compressed"):
        m = record[label]
        accuracy = {k: round(v, 3) for k, v in m["accuracy"].items()}
        line = f"{label:>10}: {accuracy}  MACs={m['flops']['macs']:,}  params={m['size']['params']:,}"
        for name, entry in m["backends"].items():
            if entry.get("status") == "ok":
                lat = entry["single_stream"]["host_latency"]
                line += f"  {name}: p50={lat['p50']:.3f} ms, {entry['offline']['best_samples_per_s']:.0f} samples/s"
            else:
                line += f"  {name}: {entry.get('status')} ({entry.get('reason') or entry.get('error')})"
        print(line)
    del metric
