"""Statistical rules of METHODOLOGY §1 and §9 on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from harness.meters.stats import (
    aa_spread,
    bootstrap_ratio_ci,
    compare_to_aa,
    interleaved_halves,
    nearest_rank,
    percentile_or_none,
    summarize,
)


def test_nearest_rank_is_loadgen_formula() -> None:
    values = list(range(1, 11))  # sorted[ceil(n*p)-1]
    assert nearest_rank(values, 50) == 5
    assert nearest_rank(values, 90) == 9
    assert nearest_rank(values, 95) == 10
    assert nearest_rank(values, 10) == 1
    with pytest.raises(ValueError):
        nearest_rank(values, 0)


@pytest.mark.parametrize(("p", "minimum"), [(90, 64), (95, 130), (99, 662)])
def test_percentiles_need_loadgen_minimum_samples(p: int, minimum: int) -> None:
    assert percentile_or_none(list(range(minimum - 1)), p) is None
    values = list(range(minimum))
    assert percentile_or_none(values, p) == values[math.ceil(minimum * p / 100) - 1]


def test_summarize_hand_computed() -> None:
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s["n"] == 4 and s["mean"] == 2.5 and s["min"] == 1.0 and s["max"] == 4.0
    assert s["std"] == pytest.approx(math.sqrt(5.0 / 3.0))
    assert s["cv"] == pytest.approx(math.sqrt(5.0 / 3.0) / 2.5)
    assert s["p50"] == 2.0 and s["p90"] is None
    assert s["iqr_over_median"] == pytest.approx((3.0 - 1.0) / 2.0)
    assert s["flags"] == ["unstable"]  # IQR/median > 10 %


def test_gpu_cv_rule_is_2_5_percent() -> None:
    steady = [100.0, 101.0] * 40  # CV ~ 0.5 %
    noisy = [100.0, 100.0, 100.0, 112.0] * 20  # CV ~ 5 %, IQR/median 0
    assert summarize(steady, gpu=True)["flags"] == []
    assert summarize(noisy, gpu=False)["flags"] == []
    assert summarize(noisy, gpu=True)["flags"] == ["unstable"]


def test_bootstrap_ratio_of_constant_samples_is_exact() -> None:
    ci = bootstrap_ratio_ci([2.0] * 30, [1.0] * 40, resamples=200)
    assert ci["ratio"] == 2.0 and ci["low"] == 2.0 and ci["high"] == 2.0
    assert ci["n_numerator"] == 30 and ci["n_denominator"] == 40


def test_bootstrap_ratio_interval_brackets_ratio_and_is_deterministic() -> None:
    a = [10.0 + (i % 7) * 0.5 for i in range(101)]
    b = [5.0 + (i % 5) * 0.2 for i in range(99)]
    ci = bootstrap_ratio_ci(a, b, resamples=500, seed=3)
    expected = sorted(a)[50] / sorted(b)[49]  # nearest-rank medians: ceil(101/2)-1 = 50, ceil(99/2)-1 = 49
    assert ci["ratio"] == pytest.approx(expected)
    assert ci["low"] <= ci["ratio"] <= ci["high"]
    assert ci["high"] - ci["low"] > 0
    assert bootstrap_ratio_ci(a, b, resamples=500, seed=3) == ci


def test_aa_rule() -> None:
    assert aa_spread([1.0] * 20, [1.0] * 20) == 0.0
    narrow = {"ratio": 1.5, "low": 1.4, "high": 1.6}
    assert compare_to_aa(narrow, spread=0.05) == "B faster"
    assert compare_to_aa({"ratio": 0.5, "low": 0.45, "high": 0.55}, spread=0.05) == "B slower"
    assert compare_to_aa({"ratio": 1.03, "low": 1.02, "high": 1.04}, spread=0.05) == "no difference"
    # the whole interval must clear the tolerance: a ratio beyond the spread with a low end inside it is no difference
    assert compare_to_aa({"ratio": 1.08, "low": 1.04, "high": 1.12}, spread=0.05) == "no difference"
    assert compare_to_aa({"ratio": 1.015, "low": 1.012, "high": 1.018}, spread=0.001) == "no difference"  # 2 % floor
    assert compare_to_aa({"ratio": 1.03, "low": 1.025, "high": 1.035}, spread=0.001) == "B faster"
    assert compare_to_aa({"ratio": 1.3, "low": 0.9, "high": 1.6}, spread=0.05) == "no difference"  # CI holds 1


def test_interleaved_halves() -> None:
    assert interleaved_halves([1, 2, 3, 4, 5]) == ([1, 3, 5], [2, 4])


def test_bootstrap_percentile_ci_brackets_the_p90_and_needs_its_minimum_n() -> None:
    from harness.meters.stats import bootstrap_percentile_ci

    samples = [float(v) for v in range(1, 101)]  # p90 (nearest rank) = 90
    ci = bootstrap_percentile_ci(samples, 90)
    assert ci is not None and ci["value"] == 90.0 and ci["low"] <= 90.0 <= ci["high"] and ci["high"] <= 100.0
    assert ci["high"] - ci["low"] > 0  # resampling moves the p90 of 100 distinct values
    assert bootstrap_percentile_ci(samples[:63], 90) is None  # LoadGen: p90 needs n >= 64
