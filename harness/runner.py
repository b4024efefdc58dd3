"""One run end to end: resolve -> baseline -> compress -> measure -> record. A failed run is recorded as failed."""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import os
import random
import signal
import socket
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from compressors import COMPRESSORS
from compressors.base import Compressor
from harness.baseline import get_baseline
from harness.config import RunConfig, convert_recipe_overrides
from harness.context import RunContext
from harness.environment import commit_info, machine_info
from harness.measure import compare_interleaved, measure_model
from harness.meters.energy_run import PhaseEnergyMeter, break_even_table
from harness.preflight import check_backends, check_paths
from harness.progress import say as _progress
from harness.quality import chance_flags
from harness.speedup import speedup_table
from harness.store import ResultsStore
from harness.tasks import prepare_tasks
from workloads import WORKLOADS
from workloads.base import Workload


@dataclass
class PreparedRun:
    config: RunConfig
    workload: Workload
    compressor: Compressor
    tasks: list[Any] = field(default_factory=list)  # harness.tasks.Task, task 1 first (its workload is ``workload``)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare(config: RunConfig) -> PreparedRun:
    """Validate everything that can be checked before any training (names, keys, compatibility)."""
    check_paths(config.results, config.data_root)
    workload_cls = WORKLOADS.get(config.workload)
    compressor_cls = COMPRESSORS.get(config.compressor)
    compressor_config = compressor_cls.Config.from_strings(config.compressor_args)
    kwargs: dict[str, Any] = {
        "profile": config.profile,
        "data_root": config.data_root,
        "options": _convert_options(workload_cls, config.workload_options),
        "recipe_overrides": convert_recipe_overrides(config.recipe_overrides),
    }
    compressor = compressor_cls(compressor_config)
    # a task sequence (harness/tasks.py): kind, syntax and every task's data are checked here, before training
    tasks = prepare_tasks(config, compressor, workload_cls, kwargs)
    workload = tasks[0].workload if tasks else workload_cls(dataset=config.dataset, **kwargs)
    compressor.check_compatible(workload)
    if config.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was given but torch sees no CUDA GPU; use --device cpu")
    check_backends(config.backends, config.device)
    if config.train_data != "real" or config.synthesis_args:
        from compressors.deepinversion.data_free import check_data_free

        check_data_free(config.train_data, workload, compressor, config.synthesis_args)
    config.dataset = workload.dataset
    return PreparedRun(config, workload, compressor, tasks)


def _convert_options(workload_cls: Any, values: dict[str, Any]) -> dict[str, Any]:
    import typing

    from harness.values import parse_value

    hints = typing.get_type_hints(workload_cls.Options)
    return {k: parse_value(v, hints[k], f"workload.{k}") if k in hints else v for k, v in values.items()}


def resolved_view(prepared: PreparedRun) -> dict[str, Any]:
    """The run's settings as it will execute: the config plus the compressor's and recipe's effective values."""
    return {
        **prepared.config.to_dict(),
        "effective": {
            "compressor": prepared.compressor.config.to_dict(),
            "recipe": prepared.workload.recipe.to_dict(),
            "workload_options": prepared.workload.options.to_dict(),
        },
    }


def new_run_id(config: RunConfig) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{config.workload}-{config.compressor}-{config.config_hash()[:6]}"


def execute(config: RunConfig, store: ResultsStore | None = None) -> dict[str, Any]:
    """Run and record. Raises after recording if the run fails."""
    store = store or ResultsStore(config.results)
    prepared = prepare(config)
    _progress("Resolved config:\n" + json.dumps(resolved_view(prepared), indent=2, sort_keys=True))
    run_id = new_run_id(config)
    run_dir = store.create_run_dir(run_id)
    record: dict[str, Any] = {
        "run_id": run_id,
        "status": "running",
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "workload": prepared.workload.describe(),
        "compressor": {
            "name": prepared.compressor.info.name,
            "paper": prepared.compressor.info.paper,
            "kind": prepared.compressor.info.kind,
            "config": prepared.compressor.config.to_dict(),
        },
        "machine_info": machine_info(),
        "commit_info": commit_info(),
        "started_at": dt.datetime.now(dt.timezone.utc).isoformat(),
        "process": {"pid": os.getpid(), "host": socket.gethostname()},
    }
    if prepared.tasks:
        record["tasks"] = [task.describe() for task in prepared.tasks]
    store.write(record)
    timings: dict[str, float] = {}
    try:
        with terminate_as_interrupt():
            _run_phases(prepared, store, run_dir, record, timings)
        record["status"] = "ok"
    except BaseException as exc:
        record["status"] = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        record["error"] = {"type": type(exc).__name__, "message": str(exc), "traceback": traceback.format_exc()}
        raise
    finally:
        record["timings_s"] = timings
        record["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat()
        store.write(record)
        print(f"Run record: {store.run_dir(run_id) / 'record.json'} (status {record['status']})", flush=True)
    return record


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the run stops like on Ctrl-C and is recorded as ``interrupted``."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While a run works, SIGTERM (a scheduler's kill, a closed session) raises :class:`Terminated` instead of ending
    the process without a word, so the record is written as ``interrupted``. Only the main thread can install it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"received signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _timed(timings: dict[str, float], name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        timings[name] = time.perf_counter() - start


def _run_phases(
    prepared: PreparedRun, store: ResultsStore, run_dir: Any, record: dict[str, Any], timings: dict[str, float]
) -> None:
    config, workload, compressor = prepared.config, prepared.workload, prepared.compressor
    seed_everything(config.seed)
    baseline, baseline_info = _timed(
        timings, "baseline", get_baseline, workload, config.seed, config.device, store, config.resume
    )
    record["baseline_training"] = baseline_info
    ctx = RunContext(workload=workload, config=config, run_dir=run_dir, tasks=prepared.tasks)
    if config.train_data != "real":
        from compressors.deepinversion.data_free import data_free_workload

        seed_everything(config.seed)
        ctx.workload, record["train_data"] = _timed(
            timings, "synthesis", data_free_workload, ctx, baseline, config.train_data, config.synthesis_args
        )
    seed_everything(config.seed)
    with PhaseEnergyMeter(config.device) as compression_energy:
        result = _timed(timings, "compress", compressor.apply, copy.deepcopy(baseline), ctx)
    record["compression_energy"] = compression_energy.result
    record["phases"] = ctx.phases
    record["compressor"]["summary"] = result.summary
    record["compressor"]["execution"] = result.execution
    args = (workload, config.backends, config.measure, config.device)
    _progress(f"measuring: baseline ({_what_is_measured(config)})")
    record["baseline"] = _timed(timings, "measure_baseline", measure_model, baseline, *args, run_dir / "baseline")
    _progress(f"measuring: compressed ({_what_is_measured(config)})")
    record["compressed"] = _timed(
        timings, "measure_compressed", measure_model, result.model, *args, run_dir / "compressed", result.weight_bits
    )
    record["variants"] = {}
    for name, model in result.variants.items():
        _progress(f"measuring: variant {name} ({_what_is_measured(config)})")
        record["variants"][name] = measure_model(model, *args, run_dir / name, result.weight_bits)
    models = {"compressed": result.model, **result.variants}
    interleaved = {}
    for name, model in models.items():
        _progress(f"measuring: {name} vs dense, interleaved, on {', '.join(config.backends)}")
        interleaved[name] = compare_interleaved(baseline, model, *args)
    record["speedup"] = speedup_table(
        record["baseline"], record["compressed"], record["variants"], interleaved, execution=result.execution
    )
    record["quality"] = chance_flags(workload, {"baseline": record["baseline"], "compressed": record["compressed"]})
    record["flags"] = sorted(record["quality"]["flags"])
    record["break_even"] = break_even_table(record["compression_energy"], record["baseline"], record["compressed"])
    torch.save(result.model.state_dict(), run_dir / "compressed_state_dict.pt")


def _what_is_measured(config: RunConfig) -> str:
    return (
        f"accuracy, FLOPs, size; SingleStream latency, Offline sweep and energy on {', '.join(config.backends)}, "
        f"'{config.measure}' profile, {config.device}"
    )
