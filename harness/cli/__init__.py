"""Command-line interface: one small module per verb (lm-evaluation-harness style)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness.cli import export, ls, report, run, suite, validate
from harness.registry import RegistryError

VERBS = (run, suite, ls, report, export, validate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Benchmark neural-network compression: accuracy, latency, throughput, energy, size.",
        epilog="Examples:\n  python -m harness run --workload resnet50 --compressor none --profile tiny\n"
        "  python -m harness ls workloads\n  python -m harness report --out results/report.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (RegistryError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
