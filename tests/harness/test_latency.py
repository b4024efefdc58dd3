"""Latency/throughput meters: stopping rules with a fake clock, timed-region hook, Offline OOM stop."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

from harness import measure
from harness.meters import latency
from harness.meters.latency import MEASURE_PROFILES, MeasureSettings, measure_latency, measure_throughput


class FakeClock:
    """Nanosecond clock that only moves when the timed function runs (1 ms per call)."""

    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now

    def work(self, *args: Any) -> None:
        self.now += 1_000_000


def test_profiles_match_methodology() -> None:
    smoke, report = MEASURE_PROFILES["smoke"], MEASURE_PROFILES["report"]
    assert (smoke.min_time_s, smoke.min_count) == (3.0, 100)
    assert (report.min_time_s, report.min_count) == (60.0, 662)
    for settings in (smoke, report):
        assert settings.warmup_s >= 1.0 and settings.warmup_count >= 20
    assert latency.below_methodology(MEASURE_PROFILES["quick"])
    assert not latency.below_methodology(smoke)


@pytest.mark.parametrize(("min_time_s", "min_count", "expected_n"), [(0.010, 30, 30), (0.050, 5, 50)])
def test_stops_only_when_both_minimums_are_met(min_time_s: float, min_count: int, expected_n: int) -> None:
    clock = FakeClock()
    settings = MeasureSettings(min_time_s=min_time_s, min_count=min_count, warmup_s=0.02, warmup_count=5)
    result = measure_latency(clock.work, [(1,), (2,)], settings, clock=clock)
    assert result["host_latency"]["n"] == expected_n
    assert result["warmup_calls"] == 20  # 0.02 s of 1 ms calls beats the 5-call minimum
    assert result["host_latency"]["p50"] == pytest.approx(1.0)
    assert "below_methodology_minimums" in result["flags"]


def test_smoke_settings_carry_no_methodology_flag(tmp_path: Path) -> None:
    clock = FakeClock()
    result = measure_latency(
        clock.work, [(0,)], MEASURE_PROFILES["smoke"], clock=clock, samples_path=tmp_path / "s.txt"
    )
    assert result["host_latency"]["n"] == 3000  # 3 s of 1 ms calls > 100 calls
    assert result["flags"] == []
    assert len((tmp_path / "s.txt").read_text().split()) == 3000


def test_inputs_cycle_through_the_pool() -> None:
    seen: list[int] = []
    clock = FakeClock()

    def fn(x: int) -> None:
        seen.append(x)
        clock.work()

    settings = MeasureSettings(min_time_s=0.0, min_count=6, warmup_s=0.0, warmup_count=1)
    measure_latency(fn, [(0,), (1,), (2,)], settings, clock=clock)
    assert seen[1:] == [0, 1, 2, 0, 1, 2]


class RegionRunnable:
    def __init__(self) -> None:
        self.inside = False
        self.calls_inside = self.calls_outside = self.entered = 0

    def __call__(self, *args: Any) -> None:
        if self.inside:
            self.calls_inside += 1
        else:
            self.calls_outside += 1

    @contextmanager
    def timed_region(self) -> Any:
        self.inside, self.entered = True, self.entered + 1
        yield
        self.inside = False


def test_timed_region_wraps_only_the_timed_loop() -> None:
    fn = RegionRunnable()
    settings = MeasureSettings(min_time_s=0.0, min_count=7, warmup_s=0.0, warmup_count=4)
    result = measure_latency(fn, [()], settings)
    assert fn.entered == 1 and fn.calls_outside == 4 and fn.calls_inside == 7 == result["host_latency"]["n"]


def test_throughput_meets_sample_minimum() -> None:
    fn = RegionRunnable()
    settings = MeasureSettings(min_time_s=0.0, min_count=20, warmup_s=0.0, warmup_count=2)
    point = measure_throughput(fn, [()], 8, settings, "cpu")
    assert point["calls"] == 3 and point["samples"] == 24  # ceil(20 / 8) calls of batch 8
    assert point["samples_per_s"] == pytest.approx(24 / point["wall_s"])
    assert fn.entered == 1


class TinyWorkload:
    def example_inputs(self, batch_size: int, device: Any = "cpu", offset: int = 0) -> tuple[torch.Tensor, ...]:
        return (torch.full((batch_size, 3), float(offset + 1)), torch.ones(5, batch_size))


class OomAbove4:
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.shape[0] > 4:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")


def test_offline_sweep_stops_at_first_oom(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(latency, "_sync", lambda device: None)
    settings = MeasureSettings(min_time_s=0.0, min_count=4, warmup_s=0.0, warmup_count=1, batch_sizes=(1, 4, 16, 64))
    offline = measure._offline(OomAbove4(), TinyWorkload(), settings, "cuda")
    assert [p["batch_size"] for p in offline["sweep"]] == [1, 4]
    assert offline["largest_batch"] == 4 and offline["stopped"]["batch_size"] == 16
    with pytest.raises(torch.cuda.OutOfMemoryError):  # on CPU an error is an error, not the end of a sweep
        measure._offline(OomAbove4(), TinyWorkload(), settings, "cpu")


def test_batch_axes_found_from_two_batch_sizes() -> None:
    assert measure.batch_axes(TinyWorkload()) == [0, 1]


def test_interleaved_comparison_verdicts() -> None:
    from harness.speedup import interleaved_comparison

    clock = FakeClock()

    def slow() -> None:
        clock.now += 2_000_000 + (clock.now // 1_000_000) % 3 * 10_000  # 2 ms with a little jitter

    def fast() -> None:
        clock.now += 1_000_000 + (clock.now // 1_000_000) % 5 * 10_000

    settings = MeasureSettings(min_time_s=0.0, min_count=40, warmup_s=0.0, warmup_count=2)
    result = interleaved_comparison(slow, fast, [()], settings, clock=clock)
    assert result["ratio"] == pytest.approx(2.0, rel=0.05) and result["verdict"] == "faster"
    same = interleaved_comparison(slow, slow, [()], settings, clock=clock)
    assert same["verdict"] == "no difference" and same["basis"].startswith("interleaved A, A'")


def test_compare_interleaved_on_eager_identical_models() -> None:
    model = torch.nn.Linear(3, 2)
    result = measure.compare_interleaved(model, model, TinyWorkloadRows(), ["eager", "nonexistent-x"], "quick", "cpu")
    eager = result["eager"]
    assert eager["status"] == "ok" and sorted(eager["by_batch"]) == ["1", "4"]  # the quick profile's batch sizes
    assert all(c["n_numerator"] >= 20 and c["basis"].startswith("interleaved") for c in eager["by_batch"].values())
    assert result["nonexistent-x"]["status"] == "failed"


def test_interleaved_order_rotates_so_no_callable_keeps_one_position() -> None:
    from harness.meters.latency import measure_interleaved

    order: list[str] = []
    fns = {name: (lambda n=name: order.append(n)) for name in ("A", "A_repeat", "B")}
    settings = MeasureSettings(min_time_s=0.0, min_count=3, warmup_s=0.0, warmup_count=0)
    samples = measure_interleaved(fns, [()], settings)
    assert order == ["A", "A_repeat", "B", "A_repeat", "B", "A", "B", "A", "A_repeat"]
    assert all(len(v) == 3 for v in samples.values())


class TinyWorkloadRows:
    def example_inputs(self, batch_size: int, device: Any = "cpu", offset: int = 0) -> tuple[torch.Tensor, ...]:
        return (torch.full((batch_size, 3), float(offset + 1)),)
