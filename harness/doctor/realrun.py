"""Step 3, one real run: ``--device cuda`` dense ResNet-18 through :func:`harness.runner.execute` with the eager and
compile backends, into ``OUT/real_run/results`` (the same code path as ``python -m harness run``).

The run trains the dense baseline on the GPU (one epoch on 512 digits images: the path, not the accuracy, is under
test), then measures it as ``run`` does: outputs against eager, SingleStream latency with CUDA events, the Offline
sweep (to the first out-of-memory batch or the cap), energy, FLOPs, memory, the roofline, and the interleaved A/A
comparisons (compressor ``none``: the "compressed" model is the dense one, so every verdict should be "no
difference"). The measurement profile is the kit's own, ``doctor`` (:func:`run_settings`: p99 needs 662 samples, a
1 s minimum instead of smoke's 3 s, so records carry ``below_methodology_minimums``), registered for this process
only by :func:`run_profile` because ``RunConfig`` accepts profile names. GPU energy of the run (4 measurements x 2
scenarios x 3 windows of 5 s) is on only when the step has at least :data:`ENERGY_MIN_S` (a budget of >= ~720 s);
otherwise the ``energy`` step measures it with the same meter functions.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.doctor.record import StepContext, StepSkipped

PROFILE = "doctor"
WORKLOAD = "resnet18"
BACKENDS = ["eager", "compile"]
SET_ITEMS = {"recipe.epochs": "1", "recipe.max_train_samples": "512", "recipe.max_val_samples": "256"}
BATCH_CAP = 1024
ENERGY_MIN_S = 300.0


def run_settings() -> Any:
    from harness.meters.latency import MeasureSettings

    return MeasureSettings(min_time_s=1.0, min_count=662, warmup_s=1.0, warmup_count=20,
                           batch_sizes=(1, 64, BATCH_CAP), processes=1)  # fmt: skip


@contextlib.contextmanager
def run_profile(settings: Any, energy: Any) -> Iterator[str]:
    """Make ``measure=PROFILE`` valid for RunConfig and resolvable by the meters, inside this block only."""
    import harness.config as config
    from harness.meters import energy as energy_meter
    from harness.meters import latency

    names: Any = config.MEASURE_PROFILES
    measure, energies = dict(latency.MEASURE_PROFILES), dict(energy_meter.ENERGY_PROFILES)
    latency.MEASURE_PROFILES[PROFILE] = settings
    energy_meter.ENERGY_PROFILES[PROFILE] = energy
    if PROFILE not in names:
        config.MEASURE_PROFILES = (*names, PROFILE)  # type: ignore[assignment]
    try:
        yield PROFILE
    finally:
        config.MEASURE_PROFILES = names
        latency.MEASURE_PROFILES.clear()
        latency.MEASURE_PROFILES.update(measure)
        energy_meter.ENERGY_PROFILES.clear()
        energy_meter.ENERGY_PROFILES.update(energies)


def run_config(device: str, results: Path, measure: str) -> Any:
    """The RunConfig of the real run, resolved as ``python -m harness run`` resolves its flags."""
    from harness.suite_file import to_run_config

    cli = {"workload": WORKLOAD, "compressor": "none", "profile": "tiny", "dataset": "digits", "device": device,
           "seed": 0, "backends": list(BACKENDS), "measure": measure, "results": str(results),
           "set_items": dict(SET_ITEMS)}  # fmt: skip
    return to_run_config({}, cli)


def _stats(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    keys = ("n", "p50", "p90", "p99", "cv", "flags")
    return {k: stats.get(k) for k in keys} if isinstance(stats, dict) else None


def _backend(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: entry.get(k) for k in ("status", "reason", "error", "stage", "agreement")}
    single, offline = entry.get("single_stream") or {}, entry.get("offline") or {}
    out["host_latency_ms"] = _stats(single.get("host_latency"))
    out["gpu_compute_time_ms"] = _stats(single.get("gpu_compute_time"))
    out["flags"] = single.get("flags")
    out["offline"] = {
        "samples_per_s": {str(p["batch_size"]): p.get("samples_per_s") for p in offline.get("sweep", [])},
        "largest_batch": offline.get("largest_batch"),
        "stopped": offline.get("stopped"),
    }
    out["energy"] = entry.get("energy")
    out["compile_time_s"] = (entry.get("info") or {}).get("compile_time_s")
    return out


def summarize_record(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """The figures of a run record that show whether each CUDA path worked."""
    measured = {
        label: {name: _backend(e) for name, e in (record.get(label) or {}).get("backends", {}).items()}
        for label in ("baseline", "compressed")
    }
    return {
        "record": str(path),
        "status": record.get("status"),
        "error": record.get("error"),
        "timings_s": record.get("timings_s"),
        "training": {k: (record.get("baseline_training") or {}).get(k) for k in ("train_seconds", "cached")},
        "gpu": (record.get("machine_info") or {}).get("gpu"),
        "backends": measured,
        "speedup_dense_vs_itself": record.get("speedup"),  # compressor none: every verdict should be no difference
    }


def _latest_record(results: Path) -> tuple[dict[str, Any], Path] | None:
    paths = sorted(results.glob("runs/*/record.json"), key=lambda p: p.stat().st_mtime)
    return (json.loads(paths[-1].read_text()), paths[-1]) if paths else None


def run(ctx: StepContext) -> None:
    from harness.meters.energy import EnergySettings
    from harness.runner import execute

    if ctx.device != "cuda":
        raise StepSkipped("the real run is a --device cuda run")
    energy = EnergySettings() if ctx.remaining() >= ENERGY_MIN_S else None
    if energy is None:
        ctx.note(f"run energy off (step has {ctx.remaining():.0f} s < {ENERGY_MIN_S:.0f} s): see the energy step")
    results = ctx.work_dir / "results"
    with run_profile(run_settings(), energy) as measure:
        config = run_config(ctx.device, results, measure)
        ctx.record("config", config.to_dict())
        try:
            execute(config)
        finally:
            found = _latest_record(results)
            if found is not None:
                ctx.record("run", summarize_record(*found))
