"""Runs one step in its own process: ``python -m harness.doctor.worker --target module:function --name ...``.

The step function gets a :class:`~harness.doctor.record.StepContext`; the worker writes the step's final status
(``ok``, ``skipped`` with the reason, or ``failed`` with the error and traceback) into ``OUT/steps/<name>.json``.
SIGTERM (sent by the orchestrator at the step's time limit) becomes an exception, so the step file says so.
Exit status: 0 for ok/skipped, 1 for failed.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.doctor.record import StepContext, StepSkipped


class StepInterrupted(BaseException):
    """SIGTERM arrived: the step ran out of time."""


def resolve(target: str) -> Callable[[StepContext], Any]:
    """The function named by ``"package.module:function"``."""
    module_name, sep, attr = target.partition(":")
    if not sep or not attr:
        raise ValueError(f"step target {target!r} is not of the form 'module:function'")
    return getattr(importlib.import_module(module_name), attr)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise StepInterrupted(f"received signal {signum}: the step reached its time limit or the kit was stopped")


def run_step(ctx: StepContext, target: str) -> int:
    """Run ``target`` with ``ctx`` and record its outcome; returns the exit status."""
    ctx.flush(status="running")
    try:
        resolve(target)(ctx)
    except StepSkipped as exc:
        ctx.flush(status="skipped", reason=str(exc), finished_at=time.time())
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure is recorded, then reported by the exit status
        error = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
        status = "interrupted" if isinstance(exc, (StepInterrupted, KeyboardInterrupt)) else "failed"
        ctx.flush(status=status, error=error, finished_at=time.time())
        traceback.print_exc()
        return 1
    ctx.flush(status="ok", finished_at=time.time())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.doctor.worker", description=__doc__)
    parser.add_argument("--target", required=True, help="module:function of the step")
    parser.add_argument("--name", required=True, help="step name")
    parser.add_argument("--out", required=True, help="the kit's output folder")
    parser.add_argument("--device", required=True, choices=["cpu", "cuda"])
    parser.add_argument("--deadline", required=True, type=float, help="time.time() by which to finish")
    parser.add_argument("--budget-s", dest="budget_s", required=True, type=float, help="the kit's total budget")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    ctx = StepContext(args.name, Path(args.out), args.device, args.deadline, args.budget_s)
    print(f"[{args.name}] {args.target} on {args.device}, {ctx.remaining():.0f} s until the deadline", flush=True)
    return run_step(ctx, args.target)


if __name__ == "__main__":
    sys.exit(main())
