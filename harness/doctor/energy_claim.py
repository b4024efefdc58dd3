"""NVML energy per inference of dense vs thinned ResNet-50, read two ways at the same instants (METHODOLOGY §3).

The sources are the meter's own (:mod:`harness.meters.energy`): the total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``) and, beside it, :class:`PowerSampler` integrating
``NVML_FI_DEV_POWER_INSTANT`` at 20 Hz; :func:`measure_idle_power` (10 s) and :func:`measure_windows` (3 windows of
5 s, the meter's minimums, throttle reasons polled) read both at the same instants, and :func:`summarize_windows`
gives J/inference, its CV across windows, average power and dynamic energy per source. The agreement figure is
``|E_sampling - E_counter| / E_counter`` over all windows of a model (and the worst single window). The workload is
the Offline scenario at batch 256, 224x224, eager fp32; dense windows come first, then thinned (not interleaved:
the CV across windows is what bounds drift). Labelled "GPU board energy (NVML)".
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from harness.doctor.record import StepContext, StepSkipped

BATCH = 256
SAMPLE_HZ = 20.0


def open_counters() -> tuple[dict[str, Any], Any, str | None]:
    """({"counter": ..., "sampling": ...}, NVML device, why sampling is missing or None)."""
    from harness.meters.energy import EnergyUnavailable, NvmlDevice, NvmlEnergyCounter, PowerSampler

    try:
        nvml = NvmlDevice(0)
        nvml.total_energy_mj()
    except Exception as exc:  # noqa: BLE001 - no NVML, or no total-energy counter (pre-Volta)
        raise StepSkipped(f"NVML total-energy counter unavailable: {exc}") from exc
    counters: dict[str, Any] = {"counter": NvmlEnergyCounter(nvml)}
    try:
        nvml.power_instant_w()
        counters["sampling"] = PowerSampler(nvml.power_instant_w, hz=SAMPLE_HZ).start()
        missing = None
    except (EnergyUnavailable, Exception) as exc:  # noqa: BLE001
        missing = f"instantaneous power not readable: {exc}"
    return counters, nvml, missing


def agreement(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """Relative difference of the sampled and counted energy, in total and in the worst window."""
    counted = sum(w["energy_j"]["counter"] for w in windows)
    sampled = sum(w["energy_j"]["sampling"] for w in windows)
    per_window = [abs(w["energy_j"]["sampling"] - w["energy_j"]["counter"]) / w["energy_j"]["counter"] for w in windows]
    return {"relative_difference": abs(sampled - counted) / counted, "worst_window": max(per_window),
            "counter_j": counted, "sampling_j": sampled}  # fmt: skip


def model_energy(
    model: Any, batches: list[Any], counters: dict[str, Any], nvml: Any, idle: dict[str, float]
) -> dict[str, Any]:
    """Windows of Offline inference of ``model``, summarized per source."""
    import torch

    from harness.meters.energy import EnergySettings, ThrottlePoller, measure_windows, summarize_windows

    state = {"i": 0}

    def step() -> int:
        with torch.inference_mode():
            model(*batches[state["i"] % len(batches)])
        state["i"] += 1
        return BATCH

    deadline = time.perf_counter() + 2.0  # warm-up
    while time.perf_counter() < deadline:
        step()
    poller = ThrottlePoller(nvml.clock_event_reasons, time.perf_counter)
    before = nvml.state()
    windows = measure_windows(step, counters, time.perf_counter, torch.cuda.synchronize, EnergySettings(), poller)
    out: dict[str, Any] = {key: summarize_windows(windows, key, idle[key]) for key in counters}
    out["agreement"] = agreement(windows) if "sampling" in counters else None
    out.update(state_before=before, state_after=nvml.state(), throttle_reasons=poller.reasons())
    return out


def run(ctx: StepContext) -> None:
    import torch

    from harness.doctor.thinned import resnet50_pair
    from harness.meters.energy import GPU_LABEL, EnergySettings, PowerSampler, measure_idle_power

    if ctx.device != "cuda":
        raise StepSkipped("GPU board energy needs a CUDA GPU with NVML")
    counters, nvml, missing = open_counters()
    try:
        dense, thinned, info, workload = resnet50_pair(ctx.cache_dir)
        ctx.record("model", info)
        settings = dataclasses.asdict(EnergySettings())
        setup = {"label": GPU_LABEL, "scenario": "Offline", "batch_size": BATCH, "settings": settings}
        ctx.record("setup", {**setup, "sampling_hz": SAMPLE_HZ, "sampling_missing": missing})
        batches = [workload.example_inputs(BATCH, "cuda", offset=i) for i in range(2)]
        idle = measure_idle_power(counters, time.perf_counter, time.sleep, torch.cuda.synchronize, EnergySettings())
        ctx.record("idle_power_w", idle)
        models: dict[str, Any] = {}
        for name, model in (("dense", dense), ("thinned", thinned)):
            models[name] = model_energy(model.to("cuda").eval(), batches, counters, nvml, idle)
            if missing:
                models[name]["agreement"] = {"reason": missing}
            ctx.record("models", models)
            model.to("cpu")
        dense_j, thin_j = (models[m]["counter"]["j_per_inference"] for m in ("dense", "thinned"))
        ctx.record("dense_over_thinned_j_per_inference", dense_j / thin_j)
    finally:
        for counter in counters.values():
            if isinstance(counter, PowerSampler):
                counter.stop()
