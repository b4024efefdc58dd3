"""Energy of inference and of the compression itself, and the break-even number of queries (METHODOLOGY §3-4).

Built on the sources and window rules of :mod:`harness.meters.energy`. Every result is either measured (``status``
"ok") or says why not (``"unavailable"``/``"skipped"``/``"too_short"`` with a ``reason``); nothing is estimated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from harness.meters.energy import (
    ENERGY_PROFILES,
    GPU_LABEL,
    EnergyCounter,
    EnergySettings,
    EnergyUnavailable,
    EnergyWindowError,
    NvmlDevice,
    NvmlEnergyCounter,
    PowerSampler,
    RaplCounter,
    ThrottlePoller,
    measure_idle_power,
    measure_windows,
    summarize_windows,
)

UNSTABLE_CV = 0.05
_IDLE_CACHE: dict[tuple[str, str], float] = {}


def open_gpu(device: str, nvml_factory: Callable[[int], Any] = NvmlDevice) -> tuple[EnergyCounter, Any]:
    """(counter, NVML device) for a CUDA device: the total-energy counter, or power sampling where it is missing."""
    if not device.startswith("cuda"):
        raise EnergyUnavailable(f"device is {device!r}: no GPU to measure")
    index = int(device.split(":")[1]) if ":" in device else 0
    nvml = nvml_factory(index)
    try:
        nvml.total_energy_mj()
        return NvmlEnergyCounter(nvml), nvml
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported on pre-Volta GPUs: fall back to sampling
        nvml.power_instant_w()
        return PowerSampler(nvml.power_instant_w).start(), nvml


def open_sources(
    device: str,
    gpu_factory: Callable[[str], tuple[EnergyCounter, Any]] = open_gpu,
    cpu_factory: Callable[[], EnergyCounter] = RaplCounter,
) -> tuple[dict[str, Any], dict[str, str], Any]:
    """Counters that exist here ({'gpu': ..., 'cpu': ...}), the reasons for those that don't, and the NVML device."""
    counters: dict[str, Any] = {}
    reasons: dict[str, str] = {}
    nvml = None
    try:
        counters["gpu"], nvml = gpu_factory(device)
    except EnergyUnavailable as exc:
        reasons["gpu"] = str(exc)
    try:
        counters["cpu"] = cpu_factory()
    except EnergyUnavailable as exc:
        reasons["cpu"] = str(exc)
    return counters, reasons, nvml


def _close(counters: dict[str, Any]) -> None:
    for counter in counters.values():
        if isinstance(counter, PowerSampler):
            counter.stop()


def _unavailable(reason: str, status: str = "unavailable") -> dict[str, Any]:
    return {"status": status, "reason": reason}


def inference_energy(
    step: Callable[[], int],
    device: str,
    measure: str,
    sync: Callable[[], None],
    sources: tuple[dict[str, Any], dict[str, str], Any] | None = None,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """GPU and CPU energy per inference of ``step`` (returns samples done) under the ``measure`` profile."""
    counters, reasons, nvml = sources or open_sources(device)
    result = {key: _unavailable(reason) for key, reason in reasons.items()}
    settings = ENERGY_PROFILES.get(measure)
    if not counters:
        return result
    if settings is None:
        _close(counters)
        reason = f"measure profile {measure!r} is below the energy minimums (>= 3 windows of >= 5 s); use smoke/report"
        return {**result, **{key: _unavailable(reason, "skipped") for key in counters}}
    try:
        result.update(_measure(step, device, counters, nvml, settings, sync, clock, sleep))
    except EnergyWindowError as exc:
        result.update({key: {"status": "failed", "reason": str(exc)} for key in counters})
    finally:
        _close(counters)
    return result


def _measure(
    step: Callable[[], int],
    device: str,
    counters: dict[str, Any],
    nvml: Any,
    settings: EnergySettings,
    sync: Callable[[], None],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    missing = {key: c for key, c in counters.items() if (device, key) not in _IDLE_CACHE}
    if missing:
        for key, watts in measure_idle_power(missing, clock, sleep, sync, settings).items():
            _IDLE_CACHE[(device, key)] = watts
    before = nvml.state() if nvml is not None else None
    poller = ThrottlePoller(nvml.clock_event_reasons if nvml is not None else None, clock)
    windows = measure_windows(step, counters, clock, sync, settings, poller)
    out: dict[str, Any] = {}
    for key, counter in counters.items():
        summary = summarize_windows(windows, key, _IDLE_CACHE[(device, key)])
        entry = {"status": "ok", "method": counter.method, **summary}
        entry["label"] = GPU_LABEL if key == "gpu" else f"CPU energy (RAPL: {', '.join(getattr(counter, 'names', []))})"
        entry["flags"] = ["unstable"] if entry["cv_across_windows"] > UNSTABLE_CV else []
        if key == "gpu":
            entry.update(state_before=before, state_after=nvml.state(), throttle_reasons=poller.reasons())
            if poller.reasons():
                entry["flags"].append("throttled")
        out[key] = entry
    return out


def clear_idle_cache() -> None:
    _IDLE_CACHE.clear()


class PhaseEnergyMeter:
    """Context manager: energy (GPU NVML, CPU RAPL where readable) and wall time of one phase of the compression.

    Phases are long (training, search), so one window is the whole phase; a phase shorter than the minimum window
    gets ``status: "too_short"`` instead of a number.
    """

    def __init__(
        self,
        device: str,
        sources: Callable[[str], tuple[dict[str, Any], dict[str, str], Any]] = open_sources,
        clock: Callable[[], float] = time.perf_counter,
        sync: Callable[[], None] | None = None,
        settings: EnergySettings = EnergySettings(),
    ) -> None:
        self.device, self.sources, self.clock, self.settings = device, sources, clock, settings
        self.sync = sync or (lambda: _cuda_sync(device))
        self.result: dict[str, Any] = {}

    def __enter__(self) -> PhaseEnergyMeter:
        self.counters, self.reasons, _ = self.sources(self.device)
        self.sync()
        self.start = self.clock()
        self.starts = {key: c.read() for key, c in self.counters.items()}
        return self

    def __exit__(self, *exc: Any) -> None:
        self.sync()
        seconds = self.clock() - self.start
        self.result = {"seconds": seconds}
        for key, reason in self.reasons.items():
            self.result[key] = _unavailable(reason)
        for key, counter in self.counters.items():
            energy = counter.delta_j(self.starts[key], counter.read())
            if seconds < self.settings.min_window_s or energy <= 0:
                self.result[key] = _unavailable(
                    f"phase lasted {seconds:.2f} s, shorter than the "
                    f"{self.settings.min_window_s} s minimum energy window",
                    "too_short",
                )
            else:
                self.result[key] = {
                    "status": "ok",
                    "energy_j": energy,
                    "avg_power_w": energy / seconds,
                    "method": counter.method,
                }
        _close(self.counters)


def _cuda_sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def break_even(
    compression_j: float | None, dense_j_per_inference: float | None, compressed_j_per_inference: float | None
) -> dict[str, Any]:
    """Queries after which the compression's energy is paid back: compression J / J saved per inference."""
    if compression_j is None:
        return {"inferences": None, "reason": "compression energy unavailable"}
    if dense_j_per_inference is None or compressed_j_per_inference is None:
        return {"inferences": None, "reason": "inference energy unavailable"}
    saved = dense_j_per_inference - compressed_j_per_inference
    if saved <= 0:
        return {"inferences": None, "reason": f"the compressed model saves no energy per inference ({saved:.3g} J)"}
    return {"inferences": compression_j / saved, "saved_j_per_inference": saved, "compression_j": compression_j}


def break_even_table(
    compression: dict[str, Any], baseline: dict[str, Any], compressed: dict[str, Any]
) -> dict[str, Any]:
    """Break-even per backend and energy source, from SingleStream (batch 1) energy per inference."""
    table: dict[str, Any] = {}
    for name, entry in compressed.get("backends", {}).items():
        base = baseline.get("backends", {}).get(name, {})
        per_source = {}
        for key in ("gpu", "cpu"):
            spent = compression.get(key, {})
            dense = base.get("energy", {}).get("single_stream", {}).get(key, {})
            comp = entry.get("energy", {}).get("single_stream", {}).get(key, {})
            entry_key = break_even(spent.get("energy_j"), dense.get("j_per_inference"), comp.get("j_per_inference"))
            missing = [
                f"{what}: {part.get('reason', 'not measured')}"
                for what, part in (("compression", spent), ("dense", dense), ("compressed", comp))
                if part.get("status") != "ok"
            ]
            if entry_key["inferences"] is None and missing:
                entry_key["reason"] += " (" + "; ".join(missing) + ")"
            per_source[key] = entry_key
        table[name] = per_source
    return table
