"""End to end through the CLI on the embedded default data, with a tiny recipe override so it runs in seconds."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys

import pytest
import torch

from harness.cli import main
from harness.store import ResultsStore
from tests.harness.chromium import CHROMIUM, SKIP_REASON, rendered_dom

FAST = [
    "--set",
    "recipe.epochs=1",
    "--set",
    "recipe.max_train_samples=96",
    "--set",
    "recipe.max_val_samples=64",
    "--set",
    "recipe.batch_size=32",
    "--measure",
    "quick",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    code = main(["run", "--workload", "resnet18", "--compressor", "none", "--results", str(root), *FAST])
    assert code == 0
    return root


def test_run_writes_a_complete_record(results, capsys):
    records = ResultsStore(results).load_all().records
    assert len(records) == 1
    record = records[0]
    assert record["status"] == "ok"
    assert record["config"]["workload"] == "resnet18" and record["config"]["dataset"] == "digits"
    assert record["config"]["recipe_overrides"]["epochs"] == "1"
    assert record["workload"]["recipe"]["epochs"] == 1
    for which in ("baseline", "compressed"):
        m = record[which]
        assert 0 <= m["accuracy"]["top1"] <= 100
        assert m["flops"]["macs"] > 0 and m["size"]["params"] > 11_000_000
        assert m["backends"]["eager"]["single_stream"]["host_latency"]["p50"] > 0
    assert record["machine_info"]["packages"]["torch"] == torch.__version__.split("+")[0]
    assert "commit_info" in record and record["timings_s"]["baseline"] > 0


def test_second_run_reuses_cached_baseline(results, capsys):
    assert main(["run", "--workload", "resnet18", "--results", str(results), "--seed", "0", *FAST]) == 0
    assert "reusing cached dense model" in capsys.readouterr().out
    records = ResultsStore(results).load_all().records
    assert any(r["baseline_training"]["cached"] for r in records)


def test_export_csv_has_required_columns(results, capsys):
    assert main(["export", "--results", str(results), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and rows[0]["workload"] == "resnet18" and rows[0]["status"] == "ok"
    for column in (
        "run_id",
        "baseline.accuracy",
        "compressed.accuracy",
        "compressed.latency_p50_ms",
        "compressed.throughput",
        "compressed.params",
        "compressed.flops",
        "compressed.size_bytes",
    ):
        assert rows[0][column] != "", column


def test_report_html_is_self_contained_and_survives_corrupt_record(results, tmp_path, capsys):
    bad = results / "runs" / "zz-corrupt" / "record.json"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("{truncated")
    out = tmp_path / "report.html"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    html = out.read_text()
    assert "Plotly.newPlot" in html
    assert "<script src=" not in html and len(html) > 1_000_000  # plotly.js inlined, no CDN: works offline
    assert "resnet18" in html and "zz-corrupt" in html
    assert "skipped unreadable record" in capsys.readouterr().err
    shutil.rmtree(bad.parent)


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_report_renders_in_headless_chromium(results, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", "--results", str(results), "--out", str(out)]) == 0
    assert "main-svg" in rendered_dom(out, tmp_path / "profile")  # plotly drew its SVG plots


def test_unknown_workload_suggests_and_fails(capsys):
    assert main(["run", "--workload", "resnet5O"]) != 0
    assert "Did you mean: resnet50" in capsys.readouterr().err


def test_module_entry_point_exit_code():
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "run", "--workload", "resnet5O"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "Did you mean: resnet50" in proc.stderr


def test_missing_dataset_names_searched_paths(tmp_path, capsys):
    code = main(
        [
            "run",
            "--workload",
            "resnet18",
            "--dataset",
            "mnist",
            "--data-root",
            str(tmp_path),
            "--results",
            str(tmp_path / "r"),
            *FAST,
        ]
    )
    assert code != 0
    err = capsys.readouterr().err
    assert "Dataset 'mnist' not found" in err and str(tmp_path) in err and "train-images-idx3-ubyte" in err


def test_nan_loss_run_is_recorded_as_failed(tmp_path, monkeypatch, capsys):
    from workloads.vision import ImageClassificationWorkload

    def nan_loss(self, model, batch):
        return model(batch[0]).sum() * float("nan")

    monkeypatch.setattr(ImageClassificationWorkload, "loss", nan_loss)
    code = main(["run", "--workload", "resnet18", "--results", str(tmp_path), "--seed", "5", *FAST])
    assert code != 0
    assert "loss became nan" in capsys.readouterr().err
    (record,) = ResultsStore(tmp_path).load_all().records
    assert record["status"] == "failed" and record["error"]["type"] == "NonFiniteLossError"


def test_suite_skips_completed_runs_and_validate(results, tmp_path, capsys):
    suite = tmp_path / "s.yaml"
    suite.write_text(
        json.dumps(
            {
                "defaults": {
                    "measure": "quick",
                    "set": {
                        "recipe.epochs": 1,
                        "recipe.max_train_samples": 96,
                        "recipe.max_val_samples": 64,
                        "recipe.batch_size": 32,
                    },
                },
                "runs": [{"workload": "resnet18", "compressor": "none"}],
            }
        )
    )
    assert main(["validate", str(suite)]) == 0
    assert main(["suite", str(suite), "--results", str(tmp_path / "r")]) == 0
    assert main(["suite", str(suite), "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "already recorded" in out
    assert len(ResultsStore(tmp_path / "r").load_all().records) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"runs": [{"workload": "resnet18", "compressor": "tayler"}]}))
    assert main(["validate", str(bad)]) == 1
    assert "Did you mean" in capsys.readouterr().out


@pytest.mark.parametrize("verb", ["run", "suite", "ls", "report", "export", "validate"])
def test_every_verb_help_shows_examples(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--help"])
    assert exit_info.value.code == 0
    assert "Examples:" in capsys.readouterr().out


def test_ls_lists_workloads_with_paper_and_params(capsys):
    assert main(["ls", "workloads"]) == 0
    out = capsys.readouterr().out
    assert "resnet50" in out and "1512.03385" in out and "25.56M" in out
    assert main(["ls", "datasets"]) == 0
    assert "fashion-mnist" in capsys.readouterr().out
