"""The GPU verification kit (``python -m harness doctor``): its CPU run end to end, the orchestrator's time limits,
crash handling and budget, the targets, and the pieces its GPU steps are built from, exercised on CPU.

Module-level imports stay light: the fake steps below are imported by the kit's worker subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.doctor.plan import Step
from harness.doctor.record import PROJECT_ROOT, StepContext

CPU_BUDGET_S = 60.0
GPU_STEPS = ("gpu_tests", "real_run", "energy", "thinned_speedup")


# ---- fake steps (run by the worker in subprocesses) -----------------------------------------------------------------
def fake_environment(ctx: StepContext) -> None:
    ctx.record("cuda", {"available": False, "name": None, "reason": "fake environment"})


def fake_hang(ctx: StepContext) -> None:
    ctx.record("measured_before_hanging", 42)
    time.sleep(600)


def fake_crash(ctx: StepContext) -> None:
    ctx.record("partial", 1)
    raise RuntimeError("boom in the step")


def fake_hard_exit(ctx: StepContext) -> None:
    print("about to die", flush=True)
    os._exit(3)


def fake_ok(ctx: StepContext) -> None:
    ctx.record("value", 7)


def _fake(name: str, fn: str, **kwargs: Any) -> Step:
    return Step(name, f"fake {name}", f"tests.harness.test_doctor:{fn}", kwargs.pop("limit_s", 20.0), **kwargs)


# ---- the CPU run end to end (what CI runs) --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("doctor")
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "harness", "doctor", "--device", "cpu", "--budget-s", str(CPU_BUDGET_S),
         "--out", str(out)],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=CPU_BUDGET_S + 60,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    return {"proc": proc, "summary": summary, "out": out, "wall_s": time.monotonic() - start}


def test_cpu_doctor_runs_cpu_steps_and_skips_gpu_steps(cpu_run: dict[str, Any]) -> None:
    proc, summary = cpu_run["proc"], cpu_run["summary"]
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = {entry["name"]: entry for entry in summary["steps"]}
    assert summary["complete"] and summary["device_used"] == "cpu"
    assert steps["environment"]["status"] == "ok"
    env = steps["environment"]["figures"]
    assert env["cuda"]["available"] is False and env["cuda"]["reason"]
    assert env["torch"]["torch"] and env["machine"]["cpu_count"]
    for name in GPU_STEPS:
        assert steps[name]["status"] == "skipped" and "needs a CUDA GPU" in steps[name]["reason"], steps[name]
    for name in ("latency_overhead", "xnor_gemm", "qnn_mlp"):
        assert steps[name]["status"] == "ok", steps[name]
        assert (cpu_run["out"] / steps[name]["log"]).is_file()
    for entry in summary["steps"]:
        assert entry["status"] in ("ok", "skipped") and entry["duration_s"] >= 0.0


def test_cpu_doctor_figures_are_real_measurements(cpu_run: dict[str, Any]) -> None:
    steps = {entry["name"]: entry["figures"] for entry in cpu_run["summary"]["steps"]}
    gemm = steps["xnor_gemm"]["cpu"]
    assert gemm["bit_exact"] and gemm["binary_s"] > 0 and gemm["fp32_s"] > 0
    assert gemm["speedup"] == pytest.approx(gemm["fp32_s"] / gemm["binary_s"])
    overhead = steps["latency_overhead"]["cpu"]
    assert overhead["ratio"] > 1.0 and overhead["call_p50_ns"] >= 1e6
    qnn = steps["qnn_mlp"]
    assert qnn["agreement_with_fake_quant"]["ok"] and qnn["model"]["execution"] == "executed"
    for batch in ("1", "100"):
        point = qnn["speedup_by_batch"][batch]
        assert point["low"] <= point["ratio"] <= point["high"]
        assert point["verdict"] in ("faster", "slower", "no difference")


def test_cpu_doctor_respects_budget_and_reports_targets(cpu_run: dict[str, Any]) -> None:
    summary = cpu_run["summary"]
    assert summary["elapsed_s"] <= CPU_BUDGET_S
    assert sum(entry["duration_s"] for entry in summary["steps"]) <= CPU_BUDGET_S
    assert summary["verdict"]["steps_failed"] == []
    targets = {t["name"]: t for t in summary["targets"]}
    for name in ("energy_cv", "thinned_resnet50_compile_bs256", "xnor_gemm_vs_cublas_fp32_8192",
                 "latency_meter_overhead_gpu", "energy_counter_vs_sampling"):  # fmt: skip
        assert targets[name]["status"] == "not measured" and targets[name]["reason"], targets[name]
    assert "cpu" in cpu_run["proc"].stdout


# ---- the orchestrator with fake steps -------------------------------------------------------------------------------
def test_timeout_crash_exit_and_budget_are_recorded_and_the_next_step_runs(tmp_path: Path) -> None:
    from harness.doctor.orchestrate import run_kit

    steps = [
        _fake("environment", "fake_environment"),
        _fake("hang", "fake_hang", limit_s=5.0),
        _fake("crash", "fake_crash"),
        _fake("hard_exit", "fake_hard_exit"),
        _fake("gpu_only", "fake_ok", gpu="required"),
        _fake("too_big", "fake_ok", min_s=1000.0),
        _fake("after", "fake_ok"),
    ]
    start = time.monotonic()
    summary = run_kit(tmp_path, device="cuda", budget_s=40.0, steps=steps, echo=lambda line: None)
    assert time.monotonic() - start < 40.0
    got = {entry["name"]: entry for entry in summary["steps"]}
    assert summary["device_used"] == "cpu" and "fake environment" in summary["device_reason"]
    assert got["hang"]["status"] == "timeout" and got["hang"]["figures"] == {"measured_before_hanging": 42}
    assert got["hang"]["duration_s"] <= 5.5
    assert got["crash"]["status"] == "failed" and "boom in the step" in got["crash"]["error"]["message"]
    assert got["crash"]["figures"] == {"partial": 1}
    assert got["hard_exit"]["status"] == "failed" and "about to die" in got["hard_exit"]["error"]["log_tail"]
    assert got["gpu_only"]["status"] == "skipped" and "needs a CUDA GPU" in got["gpu_only"]["reason"]
    assert got["too_big"]["status"] == "skipped" and "budget exhausted" in got["too_big"]["reason"]
    assert got["after"]["status"] == "ok" and got["after"]["figures"] == {"value": 7}
    assert summary["verdict"]["steps_failed"] == ["hang", "crash", "hard_exit"]
    assert json.loads((tmp_path / "summary.json").read_text())["steps"][-1]["name"] == "after"


def test_budget_caps_each_step_and_only_selects(tmp_path: Path) -> None:
    from harness.doctor.orchestrate import run_kit

    steps = [_fake("environment", "fake_environment"), _fake("hang", "fake_hang", limit_s=60.0),
             _fake("other", "fake_ok")]  # fmt: skip
    summary = run_kit(tmp_path, device="cpu", budget_s=8.0, steps=steps, echo=lambda line: None)
    got = {entry["name"]: entry for entry in summary["steps"]}
    assert got["hang"]["status"] == "timeout" and got["hang"]["limit_s"] <= 8.0
    assert summary["elapsed_s"] <= 8.0 + 1.0
    assert got["other"]["status"] == "skipped" and "budget exhausted" in got["other"]["reason"]
    only = run_kit(tmp_path / "only", device="cpu", budget_s=30.0, steps=steps, only=["other"], echo=lambda s: None)
    got = {entry["name"]: entry["status"] for entry in only["steps"]}
    assert got == {"environment": "ok", "hang": "skipped", "other": "ok"}


# ---- targets ---------------------------------------------------------------------------------------------------------
def _energy_step(cv: float, difference: float, status: str = "ok") -> dict[str, Any]:
    model = {"counter": {"cv_across_windows": cv}, "agreement": {"relative_difference": difference}}
    return {"name": "energy", "status": status, "figures": {"models": {"dense": model, "thinned": model}}}


def test_targets_pass_fail_and_not_measured() -> None:
    from harness.doctor.targets import evaluate

    def result(steps: dict[str, Any], name: str) -> dict[str, Any]:
        return next(t for t in evaluate(steps, "cuda") if t["name"] == name)

    assert result({"energy": _energy_step(0.01, 0.02)}, "energy_cv")["status"] == "pass"
    assert result({"energy": _energy_step(0.03, 0.02)}, "energy_cv")["status"] == "fail"
    assert result({"energy": _energy_step(0.01, 0.06)}, "energy_counter_vs_sampling")["status"] == "fail"
    assert result({"energy": _energy_step(0.01, 0.02, "timeout")}, "energy_cv")["status"] == "pass"
    missing = result({}, "energy_cv")
    assert missing["status"] == "not measured" and missing["reason"]
    point = {"efficiency": 0.75, "achieved": 1.35, "ideal": 1.8}
    thinned = {"name": "thinned_speedup", "status": "ok", "figures": {"points": {"compile": {"256": point}}}}
    assert result({"thinned_speedup": thinned}, "thinned_resnet50_compile_bs256")["status"] == "fail"
    not_run = {"name": "thinned_speedup", "status": "timeout",
               "figures": {"points": {"compile": {"256": {"status": "not run", "reason": "10 s left"}}}}}  # fmt: skip
    assert result({"thinned_speedup": not_run}, "thinned_resnet50_compile_bs256")["reason"] == "10 s left"
    gemm = {
        "name": "xnor_gemm",
        "status": "ok",
        "figures": {"device": "cuda", "gpu": {"8192": {"vs_fp32": {"ratio": 3.5}, "vs_bf16": {"ratio": 0.2}}}},
    }
    assert result({"xnor_gemm": gemm}, "xnor_gemm_vs_cublas_fp32_8192")["status"] == "pass"
    assert result({"xnor_gemm": gemm}, "xnor_gemm_vs_bf16_8192") | {"value": 0.2, "status": "info"} == result(
        {"xnor_gemm": gemm}, "xnor_gemm_vs_bf16_8192"
    )


def test_device_decision() -> None:
    from harness.doctor.orchestrate import decide_device

    assert decide_device("cpu", None)[0] == "cpu"
    env = {"figures": {"cuda": {"available": True, "name": "NVIDIA H200"}}}
    assert decide_device("cuda", env) == ("cuda", "CUDA GPU 'NVIDIA H200'")
    device, reason = decide_device("cuda", {"figures": {"cuda": {"available": False, "reason": "no driver"}}})
    assert device == "cpu" and "no driver" in reason
    assert "environment step failed" in decide_device("cuda", {"status": "failed"})[1]


# ---- pieces of the GPU steps, on CPU ---------------------------------------------------------------------------------
def test_real_run_profile_is_registered_only_inside_the_block(tmp_path: Path) -> None:
    from harness.config import RunConfig
    from harness.doctor.realrun import PROFILE, run_config, run_profile, run_settings
    from harness.meters import energy, latency
    from harness.runner import prepare

    before = (dict(latency.MEASURE_PROFILES), dict(energy.ENERGY_PROFILES))
    settings = run_settings()
    with run_profile(settings, None) as name:
        assert name == PROFILE and latency.MEASURE_PROFILES[name] is settings
        config = run_config("cpu", tmp_path, name)
        assert config.measure == PROFILE and config.backends == ["eager", "compile"]
        assert config.recipe_overrides["epochs"] == "1"
        prepare(config)  # names, keys and options validate as `python -m harness run` validates them
    assert (dict(latency.MEASURE_PROFILES), dict(energy.ENERGY_PROFILES)) == before
    with pytest.raises(ValueError, match="measure profile"):
        RunConfig(workload="resnet18", measure=PROFILE)


def test_summarize_record_keeps_the_cuda_figures(tmp_path: Path) -> None:
    from harness.doctor.realrun import summarize_record

    stats = {"n": 700, "p50": 1.0, "p90": 1.1, "p99": 1.3, "cv": 0.01, "flags": []}
    entry = {"status": "ok", "single_stream": {"host_latency": stats, "gpu_compute_time": stats},
             "offline": {"sweep": [{"batch_size": 1, "samples_per_s": 900.0}], "largest_batch": 1, "stopped": None},
             "energy": {"single_stream": {"gpu": {"status": "skipped"}}}, "info": {"compile_time_s": 12.0}}  # fmt: skip
    record = {"status": "ok", "baseline": {"backends": {"compile": entry}}, "compressed": {"backends": {}}}
    got = summarize_record(record, tmp_path / "record.json")
    compiled = got["backends"]["baseline"]["compile"]
    assert compiled["gpu_compute_time_ms"]["p99"] == 1.3 and compiled["offline"]["samples_per_s"] == {"1": 900.0}
    assert compiled["compile_time_s"] == 12.0 and got["status"] == "ok"


def test_thinned_model_removes_the_target_fraction_of_flops() -> None:
    import torch
    import torchvision

    from harness.doctor.thinned import build_thinned

    torch.manual_seed(0)
    dense = torchvision.models.resnet18(num_classes=10).eval()
    x = torch.randn(1, 3, 64, 64)
    thinned, info = build_thinned(dense, (x,), target=0.45, multiple=8)
    assert 0.45 <= info["flops_reduction"] < 0.52, info
    assert info["ideal_speedup"] == pytest.approx(info["dense_flops"] / info["thinned_flops"])
    widths = [m.out_channels for m in thinned.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(w % 8 == 0 for w in widths) and sum(widths) < sum(
        m.out_channels for m in dense.modules() if isinstance(m, torch.nn.Conv2d)
    )
    with torch.no_grad():
        assert thinned(x).shape == dense(x).shape


def test_parse_junit(tmp_path: Path) -> None:
    from harness.doctor.gputests import parse_junit

    path = tmp_path / "junit.xml"
    path.write_text(
        '<testsuites><testsuite name="pytest" tests="3">'
        '<testcase classname="tests.a" name="test_ok" time="0.5"/>'
        '<testcase classname="tests.a" name="test_bad" time="1">'
        '<failure message="assert 1 == 2">tb</failure></testcase>'
        '<testcase classname="tests.b" name="test_skip" time="0"><skipped message="no ORT CUDA"/></testcase>'
        "</testsuite></testsuites>"
    )
    result = parse_junit(path)
    assert result["counts"] == {"passed": 1, "failed": 1, "error": 0, "skipped": 1}
    assert result["tests"][1] == {"test": "tests.a::test_bad", "outcome": "failed", "seconds": 1.0,
                                  "message": "assert 1 == 2"}  # fmt: skip


def test_doctor_verb_help_and_no_torch_at_parser_build() -> None:
    code = "import sys; from harness.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    from harness.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["doctor", "--help"])
    assert exit_info.value.code == 0
