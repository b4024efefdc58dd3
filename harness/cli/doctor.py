"""``doctor``: self-check of the suite's CUDA paths on this machine (see :mod:`harness.doctor`)."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any

from harness.cli.common import formatter

EXAMPLES = """Examples:
  python -m harness doctor --device cuda --out /tmp/doctor
  python -m harness doctor --device cpu --budget-s 60 --out /tmp/doctor-cpu
  python -m harness doctor --device cuda --out /tmp/doctor2 --only xnor_gemm --only thinned_speedup

Writes OUT/summary.json (every figure, each step's status and duration, pass/fail against the targets),
OUT/steps/<step>.json and OUT/logs/<step>.log. Exit status 1 when a step failed or timed out.
"""


def add_parser(sub: Any) -> None:
    from harness.doctor.plan import DEFAULT_BUDGET_S, STEP_NAMES

    parser = sub.add_parser(
        "doctor", help="check the GPU paths (kernels, meters, energy, claims)", epilog=EXAMPLES,
        formatter_class=formatter(),
    )  # fmt: skip
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda", help="device to check (default cuda)")
    parser.add_argument("--out", help="output folder (default results/doctor/<UTC time>)")
    parser.add_argument(
        "--budget-s", dest="budget_s", type=float, default=DEFAULT_BUDGET_S,
        help=f"total time budget in seconds, enforced (default {DEFAULT_BUDGET_S:.0f})",
    )  # fmt: skip
    parser.add_argument(
        "--only", action="append", choices=STEP_NAMES, metavar="STEP",
        help=f"run only this step (repeatable; the environment step always runs): {', '.join(STEP_NAMES)}",
    )  # fmt: skip
    parser.set_defaults(handler=handle)


def _line(entry: dict[str, Any]) -> str:
    detail = entry.get("reason") or (entry.get("error") or {}).get("message") or ""
    return f"  {entry['name']:<17} {entry['status']:<8} {entry.get('duration_s', 0.0):7.1f} s  {detail[:90]}"


def _target_line(target: dict[str, Any]) -> str:
    value = target.get("value")
    shown = f"{value:.4g}" if isinstance(value, (int, float)) else "-"
    wanted = target.get("target", "")
    tail = target.get("reason", "") if target["status"] == "not measured" else ""
    return f"  {target['status']:<12} {target['name']:<36} {shown:>9} {wanted:<8} {tail[:70]}"


def handle(args: argparse.Namespace) -> int:
    from harness.doctor.orchestrate import run_kit

    if args.budget_s <= 0:
        raise ValueError(f"--budget-s must be positive, got {args.budget_s}")
    out = args.out or f"results/doctor/{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    summary = run_kit(out, device=args.device, budget_s=args.budget_s, only=args.only)
    print(f"\ndoctor: device {summary['device_used']} ({summary.get('device_reason', '')}), "
          f"{summary['elapsed_s']:.0f} s of {summary['budget_s']:.0f} s")  # fmt: skip
    print("\n".join(_line(entry) for entry in summary["steps"]))
    print("targets:")
    print("\n".join(_target_line(target) for target in summary["targets"]))
    print(f"summary: {summary['out_dir']}/summary.json")
    return 1 if summary["verdict"]["steps_failed"] else 0
