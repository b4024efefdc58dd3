"""Command-line interface: one small module per verb (lm-evaluation-harness style)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from harness.cli import compare, doctor, export, ls, report, run, suite, validate
from harness.registry import RegistryError

VERBS = (run, suite, ls, report, export, compare, validate, doctor)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Benchmark neural-network compression: accuracy, latency, throughput, energy, size.",
        epilog="Examples:\n  python -m harness run --workload resnet50 --compressor none --profile tiny\n"
        "  python -m harness ls workloads\n  python -m harness report --out results/report.html",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction, help="show the version and commit, then exit")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_before = os.environ.get("HARNESS_QUIET")  # --quiet holds for this call only (main() may be called again)
    try:
        return int(args.handler(args) or 0)
    except (RegistryError, ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (e.g. `export | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if quiet_before is None:
            os.environ.pop("HARNESS_QUIET", None)
        else:
            os.environ["HARNESS_QUIET"] = quiet_before


class VersionAction(argparse.Action):
    """``--version``: looks the commit up only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=kwargs.get("help"))  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"{parser.prog} {version()}")
        parser.exit()


def version() -> str:
    """The package version, and the commit when run from a git checkout."""
    import subprocess
    from pathlib import Path

    from harness import __version__

    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=2
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    return f"{__version__} ({sha})" if sha else __version__
