"""The HTML report: trade-off figures with Pareto fronts, speedup and energy panels, the runs table, the panel
registry, and the figures as headless Chromium renders them.

One real run (Taylor pruning on LeNet-3, tiniest settings) provides a baseline, an executed compressed model and a
dense ``masked`` variant. Features one tiny CPU run cannot produce (a second seed, a simulated model, measured energy,
a failed run) come from copies of that record with the named fields changed; each copy says what it changes.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.report import panels
from harness.report.html import build_report, render
from harness.report.pareto import dominated_mask, front_indices
from harness.report.points import aggregate, metric_label, record_points
from harness.report.speedup_figure import speedup_data
from harness.report.style import PALETTE, compressor_colour
from harness.store import LoadResult, ResultsStore
from tests.harness.chromium import CHROMIUM, SKIP_REASON, rendered_dom

TINY = [
    "--measure",
    "quick",
    "--set",
    "recipe.epochs=1",
    "--set",
    "recipe.max_train_samples=128",
    "--set",
    "recipe.max_val_samples=64",
    "--set",
    "max_pruning_iterations=2",
    "--quiet",
]


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report-results")
    assert main(["run", "--workload", "lenet3", "--compressor", "taylor", "--results", str(root), *TINY]) == 0
    return root


@pytest.fixture(scope="module")
def real(results: Path) -> dict[str, Any]:
    records = ResultsStore(results).load_all().records
    assert len(records) == 1 and records[0]["status"] == "ok"
    return records[0]


def _replicate(real: dict[str, Any]) -> dict[str, Any]:
    """Copy: same configuration with seed 1 (a replicate), metric +2 points, latency x1.1."""
    record = copy.deepcopy(real)
    record["run_id"] = real["run_id"] + "-seed1"
    record["config"]["seed"] = 1
    record["compressed"]["accuracy"]["top1"] += 2.0
    single = record["compressed"]["backends"]["eager"]["single_stream"]
    single["headline_p90_ms"] = (single.get("headline_p90_ms") or 0.2) * 1.1
    return record


def _simulated_with_energy(real: dict[str, Any]) -> dict[str, Any]:
    """Copy: a compressor named 'synthetic_sim' whose model is labelled simulated, with measured GPU energy (phases,
    SingleStream energy per inference and a break-even number) in place of the CPU machine's 'unavailable'."""
    record = copy.deepcopy(real)
    record["run_id"] = real["run_id"] + "-sim"
    record["config"]["compressor"] = "synthetic_sim"
    record["compressor"].update(name="synthetic_sim", kind="quantization", execution="simulated")
    record["variants"] = {}
    record["speedup"] = {"compressed": record["speedup"]["compressed"]}
    record["compressed"]["size"]["theoretical_bytes"] /= 8
    ok = {"status": "ok", "energy_j": 12.5, "avg_power_w": 100.0, "method": "nvml_total_energy"}
    record["compression_energy"]["gpu"] = ok
    for phase in record["phases"]:
        phase["energy"]["gpu"] = {**ok, "energy_j": 2.5}
    for which, mj in (("baseline", 0.9), ("compressed", 0.4)):
        energy = record[which]["backends"]["eager"]["energy"]["single_stream"]
        energy["gpu"] = {"status": "ok", "mj_per_inference": mj, "j_per_inference": mj / 1000, "label": "GPU board"}
    record["break_even"]["eager"]["gpu"] = {"inferences": 25_000.0, "saved_j_per_inference": 0.0005}
    return record


def _failed(real: dict[str, Any]) -> dict[str, Any]:
    """Copy: a run that failed during compression (no measured models), with its error."""
    record = {k: copy.deepcopy(real.get(k)) for k in ("config", "workload", "compressor", "config_hash")}
    record.update(run_id=real["run_id"] + "-failed", status="failed")
    record["error"] = {"type": "RuntimeError", "message": "loss became NaN at step 3"}
    return record


@pytest.fixture(scope="module")
def loaded(real: dict[str, Any]) -> LoadResult:
    records = [real, _replicate(real), _simulated_with_energy(real), _failed(real)]
    return LoadResult(records=records, errors=["runs/zz-corrupt/record.json: Expecting value"])


@pytest.fixture(scope="module")
def report(loaded: LoadResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_report(loaded, tmp_path_factory.mktemp("report") / "report.html", title="Report test")


def test_pareto_front_is_direction_aware() -> None:
    points = [(1.0, 90.0), (2.0, 95.0), (3.0, 93.0), (0.5, 50.0), (None, 99.0)]
    assert front_indices(points, higher_is_better=True) == [3, 0, 1]
    assert dominated_mask(points, higher_is_better=True) == [False, False, True, False, False]
    # lower is better (perplexity): the cheapest and lowest point dominates everything else
    assert front_indices(points, higher_is_better=False) == [3]


def test_compressor_colour_is_a_stable_hash_not_a_rank() -> None:
    assert compressor_colour("taylor") == compressor_colour("taylor") and compressor_colour("taylor") in PALETTE
    assert compressor_colour("taylor") == "#0067A5"  # fixed: changing it recolours every published report
    assert len({compressor_colour(n) for n in ("none", "taylor", "qnn", "dsd")}) == 4


def test_metric_label_names_unit_and_direction(real: dict[str, Any]) -> None:
    assert metric_label(real) == "top1 (%) ↑"
    lm = {"workload": {"metric": "perplexity", "higher_is_better": False}}
    assert metric_label(lm) == "perplexity (ppl) ↓"


def test_replicate_seeds_aggregate_to_mean_with_interval(loaded: LoadResult, real: dict[str, Any]) -> None:
    points = [p for r in loaded.records for p in record_points(r)]
    groups = {(a.first.compressor, a.first.model): a for a in aggregate(points)}
    taylor = groups[("taylor", "compressed")]
    assert [p.seed for p in taylor.members] == [0, 1]
    top1 = real["compressed"]["accuracy"]["top1"]
    assert taylor.mean("metric") == pytest.approx(top1 + 1.0) and taylor.span("metric") == (top1, top1 + 2.0)
    assert taylor.first.execution == "executed" and groups[("taylor", "masked")].first.execution == "dense"
    assert groups[("synthetic_sim", "compressed")].first.execution == "simulated"
    assert groups[("synthetic_sim", "compressed")].first.energy_mj == 0.4
    assert "below_methodology_minimums" in taylor.flags  # quick profile


def test_speedup_panel_shows_only_interleaved_achieved(real: dict[str, Any]) -> None:
    data = speedup_data([real])
    expected = sum(len(b["achieved"]) for m in real["speedup"].values() for b in m["backends"].values())
    assert len(data.bars) == expected and expected > 0
    masked = [b for b in data.bars if "(masked)" in b.label]
    assert masked and all(b.point["verdict"] != "faster" for b in masked)  # a masked model is never faster
    assert all("separate" not in b.point.get("basis", "") for b in data.bars)


def test_report_html_has_every_section(report: Path) -> None:
    text = report.read_text()
    assert text.count("window.PlotlyConfig") == 1 and "<script src=" not in text  # plotly.js inlined once: offline
    for needle in (
        "Quality against cost",
        "Speedup: ideal vs achieved",
        "Pareto front",
        "dense baseline",
        "energy: unavailable",
        "25,000 inferences",
        "Failed and interrupted runs",
        "RuntimeError: loss became NaN at step 3",
        'data-filter="workload"',
        'data-filter="compressor"',
        'data-filter="dataset"',
        'data-toggle-group="speedup bs 1 (interleaved)"',
        "below_methodology_minimums",
        "zz-corrupt",
    ):
        assert needle in text, needle


def test_registered_panel_renders_for_its_kind_only(
    loaded: LoadResult, real: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(panels, "_REGISTRY", list(panels._REGISTRY))
    seen: list[list[str]] = []

    @panels.register_panel("continual", "task matrix")
    def task_matrix(records: list[dict[str, Any]], ctx: panels.PanelContext) -> panels.Section:
        seen.append([r["run_id"] for r in records])
        return panels.Section("Task matrix (test panel)", ["<p>tasks</p>"])

    continual = copy.deepcopy(real)  # copy: compressor kind changed to 'continual'
    continual["run_id"] += "-continual"
    continual["compressor"]["kind"] = "continual"
    text = render(LoadResult(records=[*loaded.records, continual]))
    assert "Task matrix (test panel)" in text and seen == [[continual["run_id"]]]
    assert ("*", "speedup") in {(k, n) for k, n, _ in panels.registered()}


def test_cli_report_on_a_real_store(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    assert main(["report", "--results", str(results), "--out", str(out), "--title", "CLI title"]) == 0
    assert "1 runs, 0 not ok" in capsys.readouterr().out
    text = out.read_text()
    assert "<title>CLI title</title>" in text and "Plotly.newPlot" in text


@pytest.mark.skipif(CHROMIUM is None, reason=SKIP_REASON)
def test_figures_render_in_headless_chromium(report: Path, tmp_path: Path) -> None:
    dom = rendered_dom(report, tmp_path / "profile")
    assert dom.count('class="main-svg"') >= 3  # trade-off, speedup and phase-energy figures drawn as SVG
    legend = set(re.findall(r'class="legendtext"[^>]*>([^<]*)<', dom))
    for name in ("Pareto front", "dense baseline", "taylor", "synthetic_sim", "achieved, bs 1", "ideal (FLOPs)"):
        assert name in legend, name
    assert any(n.startswith("shape: executed") for n in legend) and any(
        n.startswith("shape: simulated") for n in legend
    )
    steps = re.findall(r'<path class="js-line" d="(M[^"]*)"[^>]*stroke-dasharray', dom)
    assert any("H" in d and "V" in d for d in steps)  # the Pareto front's dotted step line
    shapes = re.findall(r'<path class="point" transform="[^"]*" d="([^"]*)"', dom)
    assert any("A" in d for d in shapes)  # circle: executed
    assert any(re.fullmatch(r"M[\d.,-]+H[\d.-]+V[\d.-]+H[\d.-]+Z", d) for d in shapes)  # square: dense
    assert any(d.count("L") == 3 and "H" not in d for d in shapes)  # diamond: simulated
    assert any(d.count("L") == 7 and d.count("H") == 2 for d in shapes)  # star (10 vertices): the dense baseline
    assert 'class="trace bars"' in dom and 'class="errorbar"' in dom
    assert "energy: unavailable" in dom and 'id="shown-rows"' in dom


def test_table_columns_are_grouped_contiguously_in_group_order() -> None:
    from harness.report.table import COLUMNS, GROUPS

    order = [c.group for c in COLUMNS]
    runs = [g for i, g in enumerate(order) if i == 0 or order[i - 1] != g]
    assert runs == [g for g in GROUPS if g in order]  # one header cell per group spans its columns


def test_strings_from_records_never_become_markup(real: dict[str, Any], tmp_path: Path) -> None:
    """Copy: config, run id, compressor options and error text hold script and javascript: payloads."""
    hostile = copy.deepcopy(real)
    payload = "<script>alert(1)</script>"
    hostile["run_id"] = f"x{payload}"
    hostile["config"]["dataset"] = f"<img src=x onerror=alert(2)>{payload}"
    hostile["config"]["compressor_args"] = {"criterion": "javascript:alert(3)", "k</script><script>alert(4)": "1"}
    failed = copy.deepcopy(hostile)
    failed.update(run_id="failed" + payload, status="failed", error={"type": "X", "message": payload})
    out = build_report(LoadResult(records=[hostile, failed], errors=[f"bad{payload}.json"]), tmp_path / "r.html")
    text = out.read_text()
    for marker in ("alert(1)", "alert(2)", "alert(4)"):
        for start in (m.start() for m in re.finditer(re.escape(marker), text)):
            before = text[max(0, start - 40) : start]
            assert "<script>" not in before and "<img" not in before, (marker, text[start - 40 : start + 20])
    assert '<a href="javascript:' not in text and "href='javascript:" not in text


def test_data_free_panel_shows_the_synthesized_images_curves_and_controls(real: dict[str, Any], tmp_path: Path) -> None:
    import base64

    import torch

    from compressors.deepinversion.compressor import save_grid
    from workloads.mlp import MLPWorkload

    grid = save_grid(torch.zeros(4, 1, 8, 8), MLPWorkload(), tmp_path / "synthesized.png", 4)
    assert (tmp_path / "synthesized.png").is_file()
    png = base64.b64decode(grid["data_uri"].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG")
    record = copy.deepcopy(real)  # copy: a deepinversion run with a synthesis summary
    record["run_id"] += "-di"
    record["compressor"].update(name="deepinversion", kind="data-free")
    history = [{"iteration": 50.0, "r_feature": 9.0, "ce": 2.0}, {"iteration": 100.0, "r_feature": 0.5, "ce": 0.1}]
    record["compressor"]["summary"] = {
        "method": "adi",
        "synthesis": {"images": 4, "iterations_per_batch": 100, "r_feature_reduction_median": 18.0,
                      "teacher_target_agreement": 0.95, "seconds": 3.0, "loss_curves": [history]},
        "images_grid": grid,
        "teacher": {"top1": 97.5}, "data_free_student": {"top1": 80.25}, "noise_student": {"top1": 11.0},
    }  # fmt: skip
    text = render(LoadResult(records=[real, record]))
    assert "Data-free: synthesized images" in text and grid["data_uri"] in text
    assert "80.25" in text and "control" in text and "R_feature reduced 18.0x" in text
    assert "synthesis loss terms" in text
    assert text.count('alt="synthesized images"') == 1  # the plain taylor run has no panel


def test_continual_panel_shows_the_task_matrix_forgetting_and_controls(real: dict[str, Any]) -> None:
    from compressors.continual.metrics import matrix_record

    record = copy.deepcopy(real)  # copy: a packnet run with the continual summary's shape
    record["run_id"] += "-packnet"
    record["compressor"].update(name="packnet", kind="multitask")
    names = ["digits[0-4]", "digits[5-9]", "fashion-mnist[0-1]"]
    finetune = matrix_record([[99.0], [61.5, 97.0], [40.25, 55.0, 98.0]], names)
    record["compressor"]["summary"] = {
        "accuracy": matrix_record([[98.0], [98.0, 96.5], [98.0, 96.5, 97.75]], names),
        "zero_forgetting": {"tasks": [{"task": n, "bit_identical": True} for n in names]},
        "storage": {"total_bytes": 2_000_000, "shared_bytes": 1_900_000, "mask_bits_per_task": dict.fromkeys(names, 2)},
        "latency": {"task_switch": {"p50_ms": 0.125}, "per_task": [{"task": n, "p50_ms": 1.5} for n in names]},
        "controls": {"finetuning": finetune, "separate_models": {"total_bytes": 5_700_000, "tasks": []}},
    }
    text = render(LoadResult(records=[real, record]))
    assert "Continual: task-by-task accuracy" in text and "plain fine-tuning (control)" in text
    assert "58.75" in text  # fine-tuning forgetting of task 1: 99.00 - 40.25
    assert "one network per task: 5.700 MB" in text and "task switch p50 0.125 ms" in text
    assert text.count("Continual: task-by-task accuracy") == 1  # the plain taylor run adds nothing
