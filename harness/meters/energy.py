"""Energy: GPU board energy through NVML and CPU energy through RAPL (METHODOLOGY §3-4).

GPU: nvidia-ml-py (``pynvml``, NVIDIA's own bindings, already a dependency) is called directly rather than through
Zeus: the rules need idle power, several windows with their CV, clock-event (throttle) polling and GPU state
before/after, which ``ZeusMonitor`` does not give in that shape, and it would add a dependency for one subtraction.
Volta and newer: energy = difference of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ) with a device synchronize
before each read (Zeus's method). GPUs without that counter: ``NVML_FI_DEV_POWER_INSTANT`` is sampled at >= 10 Hz
in a thread and integrated (trapezoid); ``nvmlDeviceGetPowerUsage`` (a 1 s average on Ampere+) is never integrated.
The counter updates only every 10-100 ms, so a window lasts >= 5 s (the workload loops), >= 3 windows are taken
and their CV reported, and a window shorter than the minimum or one in which the counter did not move is an error
(:class:`EnergyWindowError`), not a zero. Idle power (>= 10 s, once per process and device) gives dynamic energy =
gross - idle x time. Numbers are labelled "GPU board energy (NVML)": not wall power as MLPerf Power measures it.

CPU: RAPL ``/sys/class/powercap/intel-rapl:N/energy_uj`` of the top-level package domains (psys alone when there is
no package domain; nested ``intel-rapl:N:M`` domains are never added), corrected for wrap at
``max_energy_range_uj``. Unreadable -> ``{"status": "unavailable", "reason": ...}``, never a TDP estimate.

All device access goes through small objects (``NvmlDevice``, ``RaplCounter``) and an injectable clock/sleep, so the
window rules are tested with fakes.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

GPU_LABEL = "GPU board energy (NVML)"
# nvmlClocksEventReason* bits that mean the clocks were held down (METHODOLOGY §0).
THROTTLE_BITS = {
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
}
RAPL_ROOT = Path("/sys/class/powercap")


class EnergyUnavailable(RuntimeError):
    """No energy source here; the message is the reason recorded."""


class EnergyWindowError(RuntimeError):
    """A measurement window too short for the counter: an error, never a zero (METHODOLOGY §3)."""


@dataclass(frozen=True)
class EnergySettings:
    window_s: float = 5.0
    windows: int = 3
    idle_s: float = 10.0
    sample_hz: float = 10.0
    min_window_s: float = 5.0  # METHODOLOGY §3; tests may lower it only together with a fake counter
    min_windows: int = 3


ENERGY_PROFILES: dict[str, EnergySettings | None] = {
    "quick": None,  # below the minimums: energy is reported as skipped
    "smoke": EnergySettings(),
    "report": EnergySettings(windows=5, idle_s=20.0),
}


class EnergyCounter(Protocol):
    """A cumulative energy reading; ``delta_j`` handles units and wrap."""

    def read(self) -> Any: ...

    def delta_j(self, start: Any, end: Any) -> float: ...


# ---- NVML ------------------------------------------------------------------------------------------------------------
class NvmlDevice:
    """The few NVML calls the meter needs, on one device (replaced by a fake in tests)."""

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise EnergyUnavailable(f"nvidia-ml-py is not installed ({exc})") from exc
        try:
            pynvml.nvmlInit()
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as exc:
            raise EnergyUnavailable(f"NVML unavailable: {exc}") from exc
        self.nvml = pynvml

    def total_energy_mj(self) -> float:
        return float(self.nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle))

    def power_instant_w(self) -> float:
        field = self.nvml.nvmlDeviceGetFieldValues(self.handle, [self.nvml.NVML_FI_DEV_POWER_INSTANT])[0]
        if field.nvmlReturn != 0:
            raise EnergyUnavailable(f"NVML_FI_DEV_POWER_INSTANT not supported (return {field.nvmlReturn})")
        member = ("dVal", "uiVal", "ulVal", "ullVal", "sllVal", "siVal", "usVal")[int(field.valueType)]
        return float(getattr(field.value, member)) / 1000.0  # mW

    def clock_event_reasons(self) -> int:
        return int(self.nvml.nvmlDeviceGetCurrentClocksEventReasons(self.handle))

    def state(self) -> dict[str, Any]:
        n, h = self.nvml, self.handle
        return {
            "name": n.nvmlDeviceGetName(h),
            "driver": n.nvmlSystemGetDriverVersion(),
            "sm_clock_mhz": n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM),
            "mem_clock_mhz": n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM),
            "power_limit_w": n.nvmlDeviceGetEnforcedPowerLimit(h) / 1000.0,
            "temperature_c": n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
        }


class NvmlEnergyCounter:
    """``nvmlDeviceGetTotalEnergyConsumption`` in mJ since driver load."""

    method = "total_energy_counter"

    def __init__(self, device: Any) -> None:
        self.device = device

    def read(self) -> float:
        return self.device.total_energy_mj()

    def delta_j(self, start: float, end: float) -> float:
        return (end - start) / 1000.0


def integrate_power(samples: list[tuple[float, float]]) -> float:
    """Trapezoid integral in J of ``(seconds, watts)`` samples."""
    return sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(samples, samples[1:], strict=False))


class PowerSampler:
    """Fallback counter: samples instantaneous power at ``hz`` in a thread; ``read`` is the energy integrated so far."""

    method = "power_sampling"

    def __init__(
        self,
        read_power_w: Callable[[], float],
        hz: float = 10.0,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if hz < 10.0:
            raise ValueError(f"power must be sampled at >= 10 Hz (METHODOLOGY §3), got {hz}")
        self.read_power_w, self.period, self.clock, self.sleep = read_power_w, 1.0 / hz, clock, sleep
        self.energy_j = 0.0
        self.last: tuple[float, float] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def sample(self) -> None:
        now, power = self.clock(), self.read_power_w()
        with self._lock:
            if self.last is not None:
                self.energy_j += integrate_power([self.last, (now, power)])
            self.last = (now, power)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self.sleep(self.period)

    def start(self) -> PowerSampler:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def read(self) -> float:
        self.sample()
        with self._lock:
            return self.energy_j

    def delta_j(self, start: float, end: float) -> float:
        return end - start


# ---- RAPL ------------------------------------------------------------------------------------------------------------
def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


class RaplCounter:
    """Top-level RAPL package domains (or psys alone), summed across sockets, each corrected for wrap."""

    method = "rapl"

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1) if root.exists() else []
        if not zones:
            raise EnergyUnavailable(f"no RAPL domains under {root} (not an Intel/AMD RAPL machine, or powercap absent)")
        try:
            named = {z: (z / "name").read_text().strip() for z in zones}
            packages = [z for z in zones if named[z].startswith("package")]
            self.zones = packages or [z for z in zones if named[z] == "psys"][:1]
            if not self.zones:
                raise EnergyUnavailable(f"RAPL has no package or psys domain under {root}: {sorted(named.values())}")
            self.names = [named[z] for z in self.zones]
            self.max_uj = [_read_int(z / "max_energy_range_uj") for z in self.zones]
            self.read()
        except PermissionError as exc:
            raise EnergyUnavailable(f"RAPL energy_uj is not readable ({exc}); needs root or a relaxed mode") from exc
        except (OSError, ValueError) as exc:
            raise EnergyUnavailable(f"RAPL unreadable: {exc}") from exc

    def read(self) -> list[int]:
        return [_read_int(z / "energy_uj") for z in self.zones]

    def delta_j(self, start: list[int], end: list[int]) -> float:
        total = 0
        for s, e, top in zip(start, end, self.max_uj, strict=True):
            total += e - s if e >= s else e + top - s  # one wrap at max_energy_range_uj
        return total / 1e6


# ---- windows ---------------------------------------------------------------------------------------------------------
def check_window(seconds: float, delta_j: float, settings: EnergySettings) -> None:
    """Refuse windows shorter than the minimum and windows in which the counter did not advance."""
    if seconds < settings.min_window_s:
        raise EnergyWindowError(
            f"energy window of {seconds:.3f} s is shorter than the {settings.min_window_s} s minimum"
        )
    if delta_j <= 0:
        raise EnergyWindowError(
            f"energy counter did not advance over {seconds:.3f} s: the window is shorter than the counter's update "
            f"period (refused rather than reported as zero)"
        )


class ThrottlePoller:
    """Polls clock-event reasons at most ``hz`` times per second and keeps their union."""

    def __init__(self, read_reasons: Callable[[], int] | None, clock: Callable[[], float], hz: float = 10.0) -> None:
        self.read_reasons, self.clock, self.period = read_reasons, clock, 1.0 / hz
        self.mask, self.last = 0, float("-inf")

    def poll(self) -> None:
        if self.read_reasons is not None and self.clock() - self.last >= self.period:
            self.last = self.clock()
            self.mask |= self.read_reasons()

    def reasons(self) -> list[str]:
        return [name for bit, name in THROTTLE_BITS.items() if self.mask & bit]


def measure_idle_power(
    counters: dict[str, EnergyCounter],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    sync: Callable[[], None],
    settings: EnergySettings,
) -> dict[str, float]:
    """Average idle power in W of each source over ``settings.idle_s`` (>= 10 s by default)."""
    sync()
    t0, starts = clock(), {k: c.read() for k, c in counters.items()}
    sleep(settings.idle_s)
    t1, ends = clock(), {k: c.read() for k, c in counters.items()}
    idle = {}
    for key, counter in counters.items():
        delta = counter.delta_j(starts[key], ends[key])
        check_window(t1 - t0, delta, settings)
        idle[key] = delta / (t1 - t0)
    return idle


def measure_windows(
    step: Callable[[], int],
    counters: dict[str, EnergyCounter],
    clock: Callable[[], float],
    sync: Callable[[], None],
    settings: EnergySettings,
    poller: ThrottlePoller | None = None,
) -> list[dict[str, Any]]:
    """``settings.windows`` windows of >= ``window_s`` each, every counter read at the same instants; ``step()`` runs
    the workload once and returns the number of inferences (samples) it did."""
    if settings.windows < settings.min_windows:
        raise EnergyWindowError(f"{settings.windows} windows requested; at least {settings.min_windows} are required")
    windows = []
    for _ in range(settings.windows):
        sync()
        t0, starts, inferences = clock(), {k: c.read() for k, c in counters.items()}, 0
        while clock() - t0 < settings.window_s:
            inferences += step()
            if poller is not None:
                poller.poll()
        sync()
        t1, ends = clock(), {k: c.read() for k, c in counters.items()}
        energy = {k: c.delta_j(starts[k], ends[k]) for k, c in counters.items()}
        for delta in energy.values():
            check_window(t1 - t0, delta, settings)
        windows.append({"seconds": t1 - t0, "energy_j": energy, "inferences": inferences})
    return windows


def summarize_windows(windows: list[dict[str, Any]], key: str, idle_w: float | None) -> dict[str, Any]:
    """J/inference (gross and dynamic), average power, samples/s and samples/s/W, CV of J/inference across windows."""
    per_inf = [w["energy_j"][key] / w["inferences"] for w in windows]
    energy = sum(w["energy_j"][key] for w in windows)
    seconds = sum(w["seconds"] for w in windows)
    inferences = sum(w["inferences"] for w in windows)
    mean = statistics.fmean(per_inf)
    return {
        "j_per_inference": energy / inferences,
        "mj_per_inference": 1000.0 * energy / inferences,
        "cv_across_windows": statistics.stdev(per_inf) / mean if len(per_inf) > 1 and mean > 0 else 0.0,
        "avg_power_w": energy / seconds,
        "samples_per_s": inferences / seconds,
        "samples_per_s_per_w": inferences / energy,
        "idle_power_w": idle_w,
        "dynamic_j_per_inference": None if idle_w is None else (energy - idle_w * seconds) / inferences,
        "windows": [
            {"seconds": w["seconds"], "energy_j": w["energy_j"][key], "inferences": w["inferences"]} for w in windows
        ],
    }
