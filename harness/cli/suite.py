"""``suite``: run every run of a YAML suite; runs already recorded as ok are skipped, so a suite resumes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from harness.cli.common import add_quiet, formatter, set_quiet

EXAMPLES = """Examples:
  python -m harness suite suite/smoke.yaml
  python -m harness suite suite/smoke.yaml --results /tmp/results --keep-going
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("suite", help="run a YAML suite file", epilog=EXAMPLES, formatter_class=formatter())
    parser.add_argument("file", help="suite YAML file")
    parser.add_argument("--results", help="results directory (default results/)")
    parser.add_argument("--device", choices=["cpu", "cuda"], help="override the device of every run")
    parser.add_argument("--keep-going", action="store_true", help="continue after a failed run")
    add_quiet(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.runner import execute, prepare
    from harness.store import ResultsStore
    from harness.suite_file import expand_suite, load_suite, to_run_config

    set_quiet(args.quiet)
    entries = expand_suite(load_suite(args.file))
    configs = [to_run_config(e, {"results": args.results, "device": args.device}) for e in entries]
    failures = 0
    for index, config in enumerate(configs, 1):
        label = f"[{index}/{len(configs)}] {config.workload} x {config.compressor} ({config.dataset or 'default'})"
        store = ResultsStore(config.results)
        prepare(config)  # validates and resolves defaults (e.g. the dataset) so the hash matches the stored one
        done = store.find_completed(config.config_hash())
        if done:
            print(f"{label}: already recorded as {done['run_id']}, skipped", flush=True)
            continue
        print(f"{label}: running", flush=True)
        try:
            execute(config, store)
        except Exception as exc:  # recorded as failed by execute(); the suite decides whether to go on
            failures += 1
            print(f"{label}: FAILED: {exc}", file=sys.stderr, flush=True)
            if not args.keep_going:
                return 1
    print(f"suite done: {len(configs)} runs, {failures} failed")
    return 1 if failures else 0
