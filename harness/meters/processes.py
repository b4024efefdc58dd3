"""Report-grade SingleStream latency from several separate processes (METHODOLOGY §9: ">= 5 separate processes
each meeting the time/count minimums; headline = median").

One process can land on a lucky or unlucky state (CPU frequency, memory placement, allocator, a noisy neighbour)
that repeats within the process, so its samples understate the run-to-run spread. The parent's own measurement is
process 1; the model and the input pool are pickled once (``torch.save``) and each further process is a fresh
``python -m harness.meters.latency_worker`` that prepares the same backend and measures with the same settings
and thread count. The processes run one after another, never concurrently. The result keeps every process's
statistics, the medians of their p50 and p90 (the headlines) and the spread of the p50s between processes.

A model that cannot be pickled, or a worker that fails, gives ``status: failed`` with the reason; the in-process
figures stay in the record and the run is flagged ``single_process``, never silently reported as multi-process.
Scope: SingleStream latency only; the Offline sweep and the energy meters still run in the parent process.

The payload lives in a private temporary folder of the run (created 0700 by ``tempfile``, removed afterwards), and
each worker gets the payload's SHA-256 over standard input and refuses bytes that do not match it before it
unpickles anything (see ``harness/meters/latency_worker.py``).
"""

from __future__ import annotations

import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.meters.latency import MeasureSettings

WORKER_TIMEOUT_S = 3600


def _process_stats(single: dict[str, Any]) -> dict[str, Any]:
    lat = single["host_latency"]
    return {"n": lat["n"], "p50": lat["p50"], "p90": lat["p90"], "cv": lat.get("cv"), "flags": single["flags"]}


def summarize_processes(per_process: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the per-process p50/p90 and the between-process spread of p50 ((max - min) / median)."""
    p50s = [p["p50"] for p in per_process]
    p90s = [p["p90"] for p in per_process if p["p90"] is not None]
    median_p50 = statistics.median(p50s)
    return {
        "status": "ok",
        "processes": len(per_process),
        "per_process": per_process,
        "p50_median_ms": median_p50,
        "p90_median_ms": statistics.median(p90s) if len(p90s) == len(per_process) else None,
        "p50_spread": (max(p50s) - min(p50s)) / median_p50 if median_p50 else None,
    }


def measure_in_processes(
    first: dict[str, Any],
    model: nn.Module,
    backend: str,
    axes: list[int],
    pool: list[tuple[Any, ...]],
    settings: MeasureSettings,
    device: str,
    out_dir: Path,
) -> dict[str, Any]:
    """``first`` is the parent's ``measure_latency`` result; ``settings.processes - 1`` fresh processes follow.

    Returns the keys to merge into the record's ``single_stream``: ``across_processes`` and, when every process
    succeeded, the median ``headline_p90_ms``; otherwise the ``single_process`` flag.
    """
    per_process = [_process_stats(first)]
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        payload = Path(tmp) / "model-and-inputs.pt"
        try:
            torch.save({"model": model, "pool": pool}, payload)
        except Exception as exc:  # noqa: BLE001 - recorded; the in-process figures stay
            return _single_process(first, f"model cannot be pickled for a separate process: {exc}")
        digest = hashlib.sha256(payload.read_bytes()).hexdigest()
        for index in range(2, settings.processes + 1):
            result_path = Path(tmp) / f"result-{index}.json"
            samples_path = out_dir / f"latency-{backend}-bs1-process{index}.txt"
            command = [
                sys.executable,
                "-m",
                "harness.meters.latency_worker",
                str(payload),
                backend,
                json.dumps(axes),
                json.dumps(asdict(settings)),
                device,
                str(torch.get_num_threads()),
                str(samples_path),
                str(result_path),
            ]
            try:
                done = subprocess.run(
                    command, input=digest + "\n", capture_output=True, text=True, timeout=WORKER_TIMEOUT_S
                )
            except subprocess.TimeoutExpired:
                return _single_process(first, f"latency process {index} exceeded {WORKER_TIMEOUT_S} s")
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip()[-800:]
                return _single_process(first, f"latency process {index} exited {done.returncode}: {tail}")
            per_process.append(_process_stats(json.loads(result_path.read_text())))
    across = summarize_processes(per_process)
    return {"across_processes": across, "headline_p90_ms": across["p90_median_ms"]}


def _single_process(first: dict[str, Any], error: str) -> dict[str, Any]:
    return {
        "across_processes": {"status": "failed", "error": error},
        "flags": sorted({*first["flags"], "single_process"}),
    }
