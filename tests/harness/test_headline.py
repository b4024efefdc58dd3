"""Headline numbers through the real pipeline (CLI run -> record -> export/summary) on lenet3 at the quick profile.

An identical model (``none``) must read "no difference" on every backend and batch size; Taylor's masked variant
(dense kernels, ideal speedup 1.0) must never read faster; every user-facing speedup is the interleaved one.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from harness.cli import main
from harness.store import ResultsStore

TINY = ["--measure", "quick", "--set", "recipe.epochs=1", "--set", "recipe.max_train_samples=128"]
TINY += ["--set", "recipe.max_val_samples=64"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("headline"))
    none = ["run", "--workload", "lenet3", "--compressor", "none", "--results", root, "--quiet", *TINY]
    assert main([*none, "--backend", "eager", "--backend", "onnxruntime"]) == 0
    assert main(["run", "--workload", "lenet3", "--compressor", "taylor", "--results", root, "--quiet", *TINY]) == 0
    return root


def _record(root: str, compressor: str) -> dict:
    return next(r for r in ResultsStore(root).load_all().records if r["config"]["compressor"] == compressor)


def test_identical_model_reads_no_difference_on_every_backend_and_batch(results):
    speedup = _record(results, "none")["speedup"]["compressed"]
    assert speedup["ideal_flops"] == 1.0 and speedup["cannot_be_faster"]
    assert sorted(speedup["backends"]) == ["eager", "onnxruntime"]
    for name, entry in speedup["backends"].items():
        assert entry["status"] == "ok" and sorted(entry["achieved"]) == ["1", "4"], name
        for bs, point in entry["achieved"].items():
            assert point["basis"].startswith("interleaved"), (name, bs)
            assert point["verdict"] == "no difference", (name, bs, point)
            assert point["low"] <= point["ratio"] <= point["high"]


def test_masked_variant_is_never_faster_and_thinned_model_has_a_real_ideal(results):
    speedup = _record(results, "taylor")["speedup"]
    masked, thinned = speedup["masked"], speedup["compressed"]
    assert masked["ideal_flops"] == pytest.approx(1.0) and masked["cannot_be_faster"]
    assert all(p["verdict"] != "faster" for p in masked["backends"]["eager"]["achieved"].values())
    assert thinned["execution"] == "executed" and thinned["ideal_flops"] > 1.0 and not thinned["cannot_be_faster"]
    # the separate-measurement ratio is kept, under its name, without a verdict
    separate = thinned["backends"]["eager"]["separate_measurements"]
    assert separate["ratio_bs1_p50"] > 0 and "verdict" not in (separate["ratio_bs1_ci"] or {})


def test_long_export_has_a_row_per_model_backend_and_batch(results, capsys):
    capsys.readouterr()
    assert main(["export", "--results", results, "--layout", "long", "--format", "csv"]) == 0
    rows = [r for r in csv.DictReader(io.StringIO(capsys.readouterr().out)) if r["compressor"] == "none"]
    keys = {(r["model"], r["backend"], r["batch_size"]) for r in rows}
    expected = {(m, b, bs) for m in ("baseline", "compressed") for b in ("eager", "onnxruntime") for bs in ("1", "4")}
    assert keys == expected and len(rows) == len(expected)
    for row in rows:
        assert row["metric"] == "top1" and row["higher_is_better"] == "True" and row["measure_profile"] == "quick"
        assert row["config_hash"] and row["seed"] == "0" and row["started_at"] and float(row["flops"]) > 0
        assert float(row["throughput_samples_per_s"]) > 0
        if row["model"] == "compressed":
            assert row["speedup_verdict"] == "no difference" and float(row["speedup_low"]) <= float(row["speedup"])
        if row["batch_size"] == "1":
            assert float(row["latency_p90_low_ms"]) <= float(row["latency_p90_ms"]) <= float(row["latency_p90_high_ms"])


def test_export_round_trips_types_and_precision(results, capsys):
    import pandas as pd

    capsys.readouterr()
    assert main(["export", "--results", results, "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    record = _record(results, "taylor")
    row = next(r for r in rows if r["compressor"] == "taylor")
    exact = record["speedup"]["compressed"]["backends"]["eager"]["achieved"]["1"]["ratio"]
    assert row["speedup.bs1"] == exact and row["error"] is None  # full precision, null not NaN
    assert main(["export", "--results", results, "--format", "csv"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert frame.loc[frame["compressor"] == "taylor", "speedup.bs1"].iloc[0] == exact
    assert main(["export", "--results", results, "--format", "csv", "--all-columns"]) == 0
    wide = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert "speedup.compressed.backends.eager.achieved.1.ratio" in wide.columns


def test_cli_summary_is_a_table_with_the_interleaved_speedup(results, capsys):
    from harness.cli.summary import summary_table

    text = summary_table(_record(results, "taylor"))
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["model", "backend", "top1"]
    assert {line.split()[0] for line in lines[1:]} == {"baseline", "compressed", "masked"}
    assert "{" not in text and "(dense)" in text and "x [" in text


def test_ls_runs_and_compare(results, capsys):
    capsys.readouterr()
    assert main(["ls", "runs", "--results", results]) == 0
    listing = capsys.readouterr().out
    assert "lenet3" in listing and "none" in listing and "taylor" in listing
    assert main(["compare", "lenet3-none", "lenet3-taylor", "--results", results]) == 0
    text = capsys.readouterr().out
    assert "separate measurements" in text and "interleaved, eager, bs 1" in text and "FLOPs" in text
    assert main(["compare", "lenet3", "lenet3-taylor", "--results", results]) == 2  # ambiguous: names the matches
    assert "matches 2 runs" in capsys.readouterr().err
