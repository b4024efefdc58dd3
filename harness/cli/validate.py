"""``validate``: check a suite file without running it (names, keys, datasets, compressor options)."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import formatter

EXAMPLES = """Examples:
  python -m harness validate suite/smoke.yaml
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("validate", help="check a suite file", epilog=EXAMPLES, formatter_class=formatter())
    parser.add_argument("file", help="suite YAML file")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.runner import prepare
    from harness.suite_file import expand_suite, load_suite, to_run_config

    entries = expand_suite(load_suite(args.file))
    problems = []
    for index, entry in enumerate(entries):
        try:
            prepare_config = to_run_config(entry, {})
            _validate_without_data(prepare, prepare_config)
        except Exception as exc:
            problems.append(f"run {index} ({entry.get('workload')} x {entry.get('compressor', 'none')}): {exc}")
    for problem in problems:
        print(f"invalid: {problem}")
    print(f"{args.file}: {len(entries)} runs, {len(problems)} invalid")
    return 1 if problems else 0


def _validate_without_data(prepare: Any, config: Any) -> None:
    prepare(config)
