"""Overhead of the latency meter against a bare timing loop (target < 2 % at 1 ms per call).

Run: ``pytest tests/benchmarks --benchmark-json=results/benchmarks/benchmarks.json``. Only the ratio measured in this
process is gated (METHODOLOGY §10); the absolute times are recorded in ``extra_info``.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.doctor.overhead import overhead_ratio  # shared with `python -m harness doctor` (latency_overhead step)


@pytest.mark.benchmark
def test_latency_meter_overhead_below_two_percent(benchmark: Any) -> None:
    result = benchmark.pedantic(overhead_ratio, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    assert result["ratio"] < 1.02, f"latency meter adds {100 * (result['ratio'] - 1):.2f} % per 1 ms call"
