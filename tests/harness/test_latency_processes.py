"""Report-grade latency over separate processes (METHODOLOGY §9): real worker processes on a tiny model."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from harness import measure
from harness.meters.latency import MEASURE_PROFILES, MeasureSettings, measure_latency
from harness.meters.processes import measure_in_processes, summarize_processes

TINY = MeasureSettings(min_time_s=0.05, min_count=70, warmup_s=0.01, warmup_count=2, batch_sizes=(1,), processes=3)
TWO = replace(TINY, processes=2)


def _pool() -> list[tuple[Any, ...]]:
    return [(torch.randn(1, 16),) for _ in range(4)]


class _Unpicklable(nn.Linear):
    def __init__(self) -> None:
        super().__init__(16, 4)
        self.hook = lambda x: x  # a lambda attribute: torch.save cannot pickle the module


def test_report_profile_asks_for_five_processes() -> None:
    assert MEASURE_PROFILES["report"].processes >= 5 and MEASURE_PROFILES["smoke"].processes == 1


def test_medians_and_spread_over_processes() -> None:
    per = [{"p50": p50, "p90": p50 * 2} for p50 in (1.0, 3.0, 2.0, 10.0, 2.5)]
    out = summarize_processes(per)
    assert out["processes"] == 5 and out["p50_median_ms"] == 2.5 and out["p90_median_ms"] == 5.0
    assert out["p50_spread"] == pytest.approx((10.0 - 1.0) / 2.5)
    assert summarize_processes([{"p50": 1.0, "p90": None}, {"p50": 2.0, "p90": 3.0}])["p90_median_ms"] is None


def test_each_extra_process_measures_the_model_and_keeps_its_samples(tmp_path: Path) -> None:
    model, pool = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval(), _pool()
    first = measure_latency(model, pool, TINY, "cpu")
    out = measure_in_processes(first, model, "eager", [0], pool, TINY, "cpu", tmp_path)["across_processes"]
    assert out["status"] == "ok" and out["processes"] == 3
    for index, stats in enumerate(out["per_process"], start=1):
        assert stats["n"] >= TINY.min_count and stats["p50"] > 0, index
    for index in (2, 3):
        samples = (tmp_path / f"latency-eager-bs1-process{index}.txt").read_text().split()
        assert len(samples) == out["per_process"][index - 1]["n"]
    assert out["p50_median_ms"] == sorted(p["p50"] for p in out["per_process"])[1]
    assert not list(tmp_path.glob("tmp*")), "the pickled model must not stay in the run folder"


def test_unpicklable_model_is_reported_not_hidden(tmp_path: Path) -> None:
    model, pool = _Unpicklable().eval(), _pool()
    first = measure_latency(model, pool, TINY, "cpu")
    out = measure_in_processes(first, model, "eager", [0], pool, TINY, "cpu", tmp_path)["across_processes"]
    assert out["status"] == "failed" and "pickled" in out["error"]


def test_measure_backend_uses_the_median_headline_or_flags_single_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wiring in ``harness.measure``: multi-process headline, and the ``single_process`` flag when it fails."""
    pool = _pool()
    reference = (pool[0], torch.zeros(1, 4))
    workload = type("W", (), {"example_inputs": lambda self, b, device="cpu", offset=0: pool[offset % len(pool)]})()
    monkeypatch.setattr(measure, "_offline", lambda *a: {"largest_batch": 1})
    monkeypatch.setattr(measure, "_energy", lambda *a: {})
    monkeypatch.setattr(measure, "_agreement", lambda *a: {})
    good = nn.Sequential(nn.Linear(16, 4)).eval()
    entry = measure._measure_backend("eager", good, workload, TWO, "quick", "cpu", tmp_path, reference, [0])
    single = entry["single_stream"]
    assert single["across_processes"]["status"] == "ok"
    assert single["headline_p90_ms"] == single["across_processes"]["p90_median_ms"]
    entry = measure._measure_backend(
        "eager", _Unpicklable().eval(), workload, TWO, "quick", "cpu", tmp_path, reference, [0]
    )
    assert "single_process" in entry["single_stream"]["flags"]
    assert entry["single_stream"]["headline_p90_ms"] == entry["single_stream"]["host_latency"]["p90"]


def test_worker_fails_loudly_on_an_unknown_backend(tmp_path: Path) -> None:
    model, pool = nn.Linear(16, 4).eval(), _pool()
    first = measure_latency(model, pool, TWO, "cpu")
    out = measure_in_processes(first, model, "no-such-backend", [0], pool, TWO, "cpu", tmp_path)["across_processes"]
    assert out["status"] == "failed" and "latency process 2 exited" in out["error"]
