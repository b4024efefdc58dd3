"""Runs the steps of :mod:`.plan` in subprocesses within one enforced budget and keeps ``summary.json`` current.

Each step gets ``min(its limit, budget left - reserve)`` seconds; at the limit its process group gets SIGTERM, then
SIGKILL after a short grace, and it is recorded as ``timeout`` with the figures it had written. A step that crashes
is ``failed`` with its error (or the end of its log); the next step runs regardless. A step that needs a GPU is
``skipped`` with the reason when there is none; a step that would start with less than its minimum useful time is
``skipped`` as "budget exhausted". ``summary.json`` is rewritten atomically after every step. This module imports no
torch: the environment step's subprocess decides whether CUDA is usable.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.doctor.plan import DEFAULT_BUDGET_S, STEPS, Step, scale
from harness.doctor.record import PROJECT_ROOT, read_step, step_file
from harness.doctor.targets import evaluate
from harness.store import atomic_write_text, dumps

SUMMARY_FILE = "summary.json"
SCHEMA_VERSION = 1
RESERVE_S = 2.0  # kept back for writing the summary
KILL_GRACE_S = 3.0  # between SIGTERM and SIGKILL
CACHE_VARIABLES = {
    "TORCHINDUCTOR_CACHE_DIR": "inductor",
    "TRITON_CACHE_DIR": "triton",
    "QNN_KERNEL_CACHE": "kernels",
    "XDG_CACHE_HOME": "xdg",
}


def child_env(out_dir: Path) -> dict[str, str]:
    """The steps' environment: the source tree importable, unbuffered logs, compiler caches under ``OUT/cache``
    (unless already set), no progress bars, no hub downloads."""
    env = dict(os.environ)
    paths = [str(PROJECT_ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", HARNESS_NO_PROGRESS="1", HF_HUB_OFFLINE="1")
    for variable, folder in CACHE_VARIABLES.items():
        env.setdefault(variable, str(Path(out_dir).resolve() / "cache" / folder))
    return env


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the step's process group, SIGKILL after the grace period."""
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def launch(argv: list[str], log_path: Path, limit_s: float, env: dict[str, str]) -> dict[str, Any]:
    """Run ``argv`` in a new session with its output in ``log_path``; stop it at ``limit_s``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT, env=env, start_new_session=True
        )
        timed_out = False
        try:
            proc.wait(timeout=max(limit_s - KILL_GRACE_S, 0.5))
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(proc)
        except BaseException:  # Ctrl-C or SIGTERM of the kit: its own session would outlive it otherwise
            _stop(proc)
            raise
    return {"returncode": proc.returncode, "timed_out": timed_out, "duration_s": time.monotonic() - start}


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def outcome_entry(step: Step, run: dict[str, Any], written: dict[str, Any] | None, log: Path) -> dict[str, Any]:
    """The summary entry of a step that ran: its own status when it finished, else timeout / failed."""
    written = written or {}
    status = written.get("status")
    entry: dict[str, Any] = {"figures": written.get("figures", {}), "notes": written.get("notes", [])}
    for key in ("reason", "error"):
        if key in written:
            entry[key] = written[key]
    if run["timed_out"]:
        entry.update(status="timeout", reason=f"stopped at its time limit of {run['limit_s']:.0f} s (partial figures)")
    elif status in ("ok", "skipped", "failed") and not (status == "ok" and run["returncode"] != 0):
        entry["status"] = status
    else:
        entry["status"] = "failed"
        entry.setdefault("error", {"type": "WorkerExit", "message": f"worker exited with {run['returncode']}"})
        entry["error"]["log_tail"] = _log_tail(log)
    return entry


def _skipped(step: Step, reason: str) -> dict[str, Any]:
    return {
        "name": step.name,
        "title": step.title,
        "status": "skipped",
        "reason": reason,
        "duration_s": 0.0,
        "figures": {},
    }


def run_step(step: Step, ctx: dict[str, Any], left_s: float) -> dict[str, Any]:
    """Run one step in a worker subprocess with ``min(limit, left)`` seconds; returns its summary entry."""
    limit = left_s if step.open_ended else min(step.limit_s * scale(ctx["budget_s"]), left_s)
    out_dir: Path = ctx["out_dir"]
    log = out_dir / "logs" / f"{step.name}.log"
    argv = [
        ctx["python"], "-m", "harness.doctor.worker", "--target", step.target, "--name", step.name,
        "--out", str(out_dir), "--device", ctx["device"], "--deadline", str(time.time() + limit - KILL_GRACE_S),
        "--budget-s", str(ctx["budget_s"]),
    ]  # fmt: skip
    started = dt.datetime.now(dt.timezone.utc).isoformat()
    step_file(out_dir, step.name).unlink(missing_ok=True)  # never read a previous run's figures
    run = {**launch(argv, log, limit, ctx["env"]), "limit_s": limit}
    entry = outcome_entry(step, run, read_step(out_dir, step.name), log)
    base = {"name": step.name, "title": step.title, "device": ctx["device"], "started_at": started}
    return {**base, **entry, "duration_s": run["duration_s"], "limit_s": limit, "returncode": run["returncode"],
            "log": str(log.relative_to(out_dir))}  # fmt: skip


def decide_device(requested: str, environment: dict[str, Any] | None) -> tuple[str, str]:
    """(device used, why): CUDA only when it was asked for and the environment step found it usable."""
    if requested == "cpu":
        return "cpu", "--device cpu was given"
    cuda = ((environment or {}).get("figures") or {}).get("cuda") or {}
    if cuda.get("available"):
        return "cuda", f"CUDA GPU {cuda.get('name')!r}"
    return "cpu", f"--device cuda was given but CUDA is not usable: {cuda.get('reason', 'environment step failed')}"


def skip_reason(step: Step, ctx: dict[str, Any], left_s: float, only: Sequence[str] | None) -> str | None:
    """Why ``step`` is not run, or None when it runs."""
    if only and step.name not in only and step.name != "environment":
        return "not selected (--only)"
    if step.gpu == "required" and ctx["device"] != "cuda":
        return f"needs a CUDA GPU; {ctx['device_reason']}"
    if left_s < step.min_s:
        return f"budget exhausted: {max(left_s, 0.0):.0f} s left, the step needs at least {step.min_s:.0f} s"
    return None


def write_summary(summary: dict[str, Any], out_dir: Path) -> None:
    steps = {entry["name"]: entry for entry in summary["steps"]}
    summary["targets"] = evaluate(steps, summary["device_used"])
    failed = [e["name"] for e in summary["steps"] if e["status"] in ("failed", "timeout", "interrupted")]
    summary["verdict"] = {
        "steps_failed": failed,
        "targets_passed": [t["name"] for t in summary["targets"] if t["status"] == "pass"],
        "targets_failed": [t["name"] for t in summary["targets"] if t["status"] == "fail"],
        "targets_not_measured": [t["name"] for t in summary["targets"] if t["status"] == "not measured"],
    }
    atomic_write_text(out_dir / SUMMARY_FILE, dumps(summary))


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def run_kit(
    out_dir: str | Path,
    device: str = "cuda",
    budget_s: float = DEFAULT_BUDGET_S,
    only: Sequence[str] | None = None,
    steps: Sequence[Step] = STEPS,
    echo: Callable[[str], None] = print,
    python: str = sys.executable,
) -> dict[str, Any]:
    """Run the kit into ``out_dir`` and return the summary (also written to ``out_dir/summary.json``).

    SIGTERM is turned into KeyboardInterrupt while it runs (main thread only), so the running step is stopped too.
    """
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if main_thread else None
    try:
        return _run_steps(Path(out_dir).resolve(), device, budget_s, only, steps, echo, python)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _run_steps(
    out: Path,
    device: str,
    budget_s: float,
    only: Sequence[str] | None,
    steps: Sequence[Step],
    echo: Callable[[str], None],
    python: str,
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    ctx: dict[str, Any] = {"out_dir": out, "budget_s": budget_s, "python": python, "env": child_env(out),
                           "device": device, "device_reason": "not decided yet"}  # fmt: skip
    summary: dict[str, Any] = {
        "kit": "python -m harness doctor", "schema_version": SCHEMA_VERSION, "out_dir": str(out),
        "device_requested": device, "device_used": device, "budget_s": budget_s, "complete": False,
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(), "steps": [],
    }  # fmt: skip
    for index, step in enumerate(steps, 1):
        left = budget_s - (time.monotonic() - start) - RESERVE_S
        reason = skip_reason(step, ctx, left, only)
        echo(f"[doctor] {index}/{len(steps)} {step.name}: " + (f"skipped ({reason})" if reason else "running"))
        try:
            entry = _skipped(step, reason) if reason else run_step(step, ctx, left)
        except KeyboardInterrupt:
            summary["steps"].append({**_skipped(step, "the kit was interrupted"), "status": "interrupted"})
            summary["elapsed_s"] = time.monotonic() - start
            write_summary(summary, out)
            raise
        summary["steps"].append(entry)
        if step.name == "environment":
            ctx["device"], ctx["device_reason"] = decide_device(device, entry)
            summary.update(device_used=ctx["device"], device_reason=ctx["device_reason"])
        if not reason:
            echo(f"[doctor]    -> {entry['status']} in {entry['duration_s']:.1f} s")
        summary["elapsed_s"] = time.monotonic() - start
        write_summary(summary, out)
    summary.update(complete=True, elapsed_s=time.monotonic() - start)
    summary["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
    write_summary(summary, out)
    return summary
