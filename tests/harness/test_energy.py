"""Energy meters driven by a fake NVML device/clock and a fake RAPL sysfs tree (METHODOLOGY §3-4)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from harness.meters import energy_run
from harness.meters.energy import (
    EnergySettings,
    EnergyUnavailable,
    EnergyWindowError,
    NvmlEnergyCounter,
    PowerSampler,
    RaplCounter,
    check_window,
    integrate_power,
    measure_windows,
    summarize_windows,
)
from harness.meters.energy_run import PhaseEnergyMeter, break_even, inference_energy, open_gpu


class FakeGpu:
    """A clock, a power draw and an NVML-like device whose energy counter only updates every ``period`` seconds."""

    def __init__(self, period: float = 0.1, idle_w: float = 50.0, busy_w: float = 200.0, reasons: int = 0) -> None:
        self.t, self.energy_j, self.period = 0.0, 0.0, period
        self.idle_w, self.busy_w, self.reasons = idle_w, busy_w, reasons
        self.history = [(0.0, 0.0)]

    def clock(self) -> float:
        return self.t

    def _advance(self, seconds: float, watts: float) -> None:
        self.t += seconds
        self.energy_j += seconds * watts
        self.history.append((self.t, self.energy_j))

    def sleep(self, seconds: float) -> None:
        self._advance(seconds, self.idle_w)

    def step(self) -> int:  # one 10 ms inference
        self._advance(0.01, self.busy_w)
        return 1

    def total_energy_mj(self) -> float:
        tick = math.floor(self.t / self.period + 1e-9) * self.period
        before = [(t, e) for t, e in self.history if t <= tick + 1e-12]
        (t0, e0), later = before[-1], [(t, e) for t, e in self.history if t > tick + 1e-12]
        if later:  # interpolate inside the segment that contains the tick
            t1, e1 = later[0]
            e0 += (e1 - e0) * (tick - t0) / (t1 - t0)
        return 1000.0 * e0

    def clock_event_reasons(self) -> int:
        return self.reasons

    def state(self) -> dict[str, Any]:
        return {"sm_clock_mhz": 1980, "power_limit_w": 700.0, "temperature_c": 40, "t": self.t}


def _sources(gpu: FakeGpu) -> tuple[dict[str, Any], dict[str, str], Any]:
    return {"gpu": NvmlEnergyCounter(gpu)}, {"cpu": "no RAPL here"}, gpu


@pytest.fixture(autouse=True)
def _fresh_idle_cache() -> None:
    energy_run.clear_idle_cache()


def test_gpu_energy_per_inference_and_dynamic_energy() -> None:
    gpu = FakeGpu()
    result = inference_energy(gpu.step, "cuda:0", "smoke", lambda: None, _sources(gpu), gpu.clock, gpu.sleep)
    entry = result["gpu"]
    assert entry["status"] == "ok" and entry["method"] == "total_energy_counter"
    assert entry["label"] == "GPU board energy (NVML)"
    assert entry["idle_power_w"] == pytest.approx(50.0, rel=1e-3)
    assert entry["j_per_inference"] == pytest.approx(200.0 * 0.01, rel=1e-2)  # 2 J
    assert entry["mj_per_inference"] == pytest.approx(2000.0, rel=1e-2)
    assert entry["dynamic_j_per_inference"] == pytest.approx((200.0 - 50.0) * 0.01, rel=2e-2)  # 1.5 J
    assert entry["avg_power_w"] == pytest.approx(200.0, rel=1e-2)
    assert entry["samples_per_s_per_w"] == pytest.approx(100.0 / 200.0, rel=1e-2)
    assert len(entry["windows"]) == 3 and all(w["seconds"] >= 5.0 for w in entry["windows"])
    assert entry["cv_across_windows"] < 0.01 and entry["flags"] == []
    assert entry["state_before"]["t"] == pytest.approx(10.0) and entry["state_after"]["t"] >= 25.0
    assert result["cpu"] == {"status": "unavailable", "reason": "no RAPL here"}


def test_throttle_reasons_flag_the_result() -> None:
    gpu = FakeGpu(reasons=0x4 | 0x40)
    entry = inference_energy(gpu.step, "cuda", "smoke", lambda: None, _sources(gpu), gpu.clock, gpu.sleep)["gpu"]
    assert entry["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert "throttled" in entry["flags"]


def test_summarize_windows_hand_computed() -> None:
    windows = [{"seconds": 5.0, "energy_j": {"gpu": e}, "inferences": 10} for e in (10.0, 20.0, 30.0)]
    s = summarize_windows(windows, "gpu", idle_w=1.0)
    assert s["j_per_inference"] == 2.0 and s["avg_power_w"] == 4.0 and s["samples_per_s"] == 2.0
    assert s["cv_across_windows"] == pytest.approx(0.5)  # per-inference 1, 2, 3: stdev 1 / mean 2
    assert s["samples_per_s_per_w"] == pytest.approx(0.5)
    assert s["dynamic_j_per_inference"] == pytest.approx((60.0 - 1.0 * 15.0) / 30)


def test_window_shorter_than_minimum_is_refused() -> None:
    with pytest.raises(EnergyWindowError, match="shorter than the 5.0 s minimum"):
        check_window(4.9, 100.0, EnergySettings())


def test_window_shorter_than_counter_period_is_refused_not_zero() -> None:
    gpu = FakeGpu(period=0.1)
    settings = EnergySettings(window_s=0.05, min_window_s=0.01, windows=3)
    with pytest.raises(EnergyWindowError, match="did not advance"):
        measure_windows(gpu.step, {"gpu": NvmlEnergyCounter(gpu)}, gpu.clock, lambda: None, settings)
    gpu = FakeGpu(period=0.1)
    windows = measure_windows(
        gpu.step,
        {"gpu": NvmlEnergyCounter(gpu)},
        gpu.clock,
        lambda: None,
        EnergySettings(window_s=0.5, min_window_s=0.01),
    )
    assert all(w["energy_j"]["gpu"] > 0 for w in windows)


def test_fewer_than_three_windows_refused() -> None:
    gpu = FakeGpu()
    with pytest.raises(EnergyWindowError, match="at least 3"):
        measure_windows(gpu.step, {"gpu": NvmlEnergyCounter(gpu)}, gpu.clock, lambda: None, EnergySettings(windows=2))


def test_quick_profile_skips_and_cpu_device_has_no_gpu() -> None:
    gpu = FakeGpu()
    result = inference_energy(gpu.step, "cuda", "quick", lambda: None, _sources(gpu), gpu.clock, gpu.sleep)
    assert result["gpu"]["status"] == "skipped" and "5 s" in result["gpu"]["reason"]
    assert gpu.t == 0.0  # nothing was run
    with pytest.raises(EnergyUnavailable, match="no GPU"):
        open_gpu("cpu")


class NoCounterGpu(FakeGpu):
    def total_energy_mj(self) -> float:
        raise RuntimeError("NVMLError_NotSupported")

    def power_instant_w(self) -> float:
        return 123.0


def test_power_sampling_fallback_when_counter_missing() -> None:
    counter, _ = open_gpu("cuda:0", nvml_factory=lambda index: NoCounterGpu())
    try:
        assert isinstance(counter, PowerSampler) and counter.method == "power_sampling"
    finally:
        counter.stop()


def test_power_sampler_integrates_trapezoid() -> None:
    assert integrate_power([(0.0, 100.0), (0.1, 100.0), (0.2, 200.0)]) == pytest.approx(10.0 + 15.0)
    clock = iter([0.0, 0.1, 0.2])
    watts = iter([100.0, 100.0, 200.0])
    sampler = PowerSampler(lambda: next(watts), hz=10.0, clock=lambda: next(clock))
    sampler.sample()
    sampler.sample()
    assert sampler.read() == pytest.approx(25.0)
    with pytest.raises(ValueError, match="10 Hz"):
        PowerSampler(lambda: 1.0, hz=5.0)


def _zone(root: Path, name: str, label: str, energy: int, max_range: int = 10_000) -> Path:
    zone = root / name
    zone.mkdir(parents=True)
    (zone / "name").write_text(label + "\n")
    (zone / "energy_uj").write_text(f"{energy}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_range}\n")
    return zone


def test_rapl_sums_packages_only_and_corrects_wrap(tmp_path: Path) -> None:
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 9000)
    _zone(tmp_path, "intel-rapl:0:0", "core", 5)  # nested in package-0: never added
    p1 = _zone(tmp_path, "intel-rapl:1", "package-1", 100)
    _zone(tmp_path, "intel-rapl:2", "psys", 7)  # contains the packages: never added to them
    counter = RaplCounter(tmp_path)
    assert counter.names == ["package-0", "package-1"]
    start = counter.read()
    (p0 / "energy_uj").write_text("500\n")  # wrapped: 9000 -> 10000 -> 500
    (p1 / "energy_uj").write_text("300\n")
    assert counter.delta_j(start, counter.read()) == pytest.approx((500 + 10_000 - 9000 + 200) / 1e6)


def test_rapl_psys_alone_and_unreadable(tmp_path: Path) -> None:
    _zone(tmp_path / "a", "intel-rapl:0", "psys", 1)
    assert RaplCounter(tmp_path / "a").names == ["psys"]
    zone = _zone(tmp_path / "b", "intel-rapl:0", "package-0", 1)
    (zone / "energy_uj").unlink()
    (zone / "energy_uj").mkdir()  # unreadable as a file
    with pytest.raises(EnergyUnavailable, match="RAPL unreadable"):
        RaplCounter(tmp_path / "b")
    with pytest.raises(EnergyUnavailable, match="no RAPL domains"):
        RaplCounter(tmp_path / "missing")


def test_phase_meter_and_break_even() -> None:
    gpu = FakeGpu()
    with PhaseEnergyMeter("cuda", sources=lambda device: _sources(gpu), clock=gpu.clock, sync=lambda: None) as meter:
        for _ in range(600):  # 6 s at 200 W
            gpu.step()
    assert meter.result["gpu"]["energy_j"] == pytest.approx(1200.0, rel=1e-2)
    assert meter.result["cpu"]["status"] == "unavailable"
    with PhaseEnergyMeter("cuda", sources=lambda device: _sources(gpu), clock=gpu.clock, sync=lambda: None) as short:
        gpu.step()
    assert short.result["gpu"]["status"] == "too_short"
    assert break_even(1000.0, 2.0, 1.5)["inferences"] == pytest.approx(2000.0)
    assert break_even(1000.0, 1.5, 2.0)["inferences"] is None
    assert "unavailable" in break_even(None, 2.0, 1.0)["reason"]
    assert "unavailable" in break_even(10.0, None, 1.0)["reason"]


def test_break_even_table_per_backend_and_source() -> None:
    def measured(j: float) -> dict[str, Any]:
        gpu = {"status": "ok", "j_per_inference": j}
        cpu = {"status": "unavailable", "reason": "no RAPL"}
        return {"backends": {"eager": {"status": "ok", "energy": {"single_stream": {"gpu": gpu, "cpu": cpu}}}}}

    compression = {"gpu": {"status": "ok", "energy_j": 1000.0}, "cpu": {"status": "unavailable", "reason": "no RAPL"}}
    table = energy_run.break_even_table(compression, measured(2.0), measured(1.5))
    assert table["eager"]["gpu"]["inferences"] == pytest.approx(2000.0)
    assert table["eager"]["cpu"]["inferences"] is None and "no RAPL" in table["eager"]["cpu"]["reason"]


# ---- the real device (pytest -m gpu; run by `python -m harness doctor --device cuda`) --------------------------------
def _real_nvml() -> Any:
    from harness.meters.energy import NvmlDevice

    try:
        return NvmlDevice(0)
    except EnergyUnavailable as exc:
        pytest.skip(f"NVML not usable here: {exc}")


def _gpu_load_step() -> Any:
    """One synchronized bf16 matmul of 4096^2 (a real load, ~0.2 ms on an H100-class GPU): returns 1 inference."""
    import torch

    gen = torch.Generator(device="cuda").manual_seed(0)
    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16, generator=gen)

    def step() -> int:
        torch.mm(a, a)
        torch.cuda.synchronize()
        return 1

    return step


@pytest.mark.gpu
def test_real_nvml_counter_advances_under_load_and_state_reads() -> None:
    import time

    import torch

    gpu = _real_nvml()
    state = gpu.state()
    assert state["name"] and state["driver"] and state["power_limit_w"] > 0
    assert isinstance(gpu.clock_event_reasons(), int)
    step = _gpu_load_step()
    torch.cuda.synchronize()
    start_mj, deadline = gpu.total_energy_mj(), time.perf_counter() + 1.0
    while time.perf_counter() < deadline:
        step()
    assert gpu.total_energy_mj() > start_mj  # the counter updates every 10-100 ms: 1 s of load must move it


@pytest.mark.gpu
def test_real_nvml_window_shorter_than_minimum_is_refused() -> None:
    import time

    import torch

    counter = NvmlEnergyCounter(_real_nvml())
    with pytest.raises(EnergyWindowError, match="shorter than the 5.0 s minimum"):
        measure_windows(_gpu_load_step(), {"gpu": counter}, time.perf_counter, torch.cuda.synchronize,
                        EnergySettings(window_s=0.05))  # fmt: skip


@pytest.mark.gpu
def test_real_nvml_power_instant_is_plausible() -> None:
    gpu = _real_nvml()
    try:
        watts = gpu.power_instant_w()
    except EnergyUnavailable as exc:
        pytest.skip(str(exc))
    assert 1.0 < watts < 2.0 * gpu.state()["power_limit_w"]


@pytest.mark.gpu
def test_real_inference_energy_follows_window_and_idle_rules() -> None:
    """The meter end to end on the device: >= 10 s idle, 3 windows of >= 5 s, J/inference, CV, dynamic energy."""
    import torch

    energy_run.clear_idle_cache()
    result = inference_energy(_gpu_load_step(), "cuda:0", "smoke", torch.cuda.synchronize)
    gpu = result["gpu"]
    assert gpu["status"] == "ok", gpu
    assert gpu["method"] == "total_energy_counter"  # Volta and newer have the counter
    assert len(gpu["windows"]) == 3 and all(w["seconds"] >= 5.0 and w["energy_j"] > 0 for w in gpu["windows"])
    assert gpu["idle_power_w"] > 0 and gpu["avg_power_w"] > gpu["idle_power_w"]
    assert 0 < gpu["dynamic_j_per_inference"] < gpu["j_per_inference"]
    assert gpu["cv_across_windows"] < 0.10
    assert gpu["state_before"]["name"] == gpu["state_after"]["name"]
