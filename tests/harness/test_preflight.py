"""Bad input is refused before any work: exit 2, a message naming the bad value, no traceback, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main

BAD_RUNS = [
    (["--set", "recipe.epochs=0"], "recipe.epochs=0"),
    (["--set", "recipe.epochs=-3"], "recipe.epochs=-3"),
    (["--set", "recipe.batch_size=0"], "recipe.batch_size=0"),
    (["--set", "recipe.max_train_samples=-1"], "recipe.max_train_samples=-1"),
    (["--set", "recipe.lr=nan"], "recipe.lr=nan"),
    (["--set", "recipe.lr=inf"], "recipe.lr=inf"),
    (["--set", "recipe.lr=-0.1"], "recipe.lr=-0.1"),
    (["--set", "recipe.lr=0"], "recipe.lr=0"),
    (["--set", "recipe.weight_decay=-1"], "recipe.weight_decay=-1"),
    (["--set", "recipe.optimizer=adamm"], "recipe.optimizer='adamm'"),
    (["--set", "recipe.schedule=cosin"], "recipe.schedule='cosin'"),
    (["--set", "recipe.image_size=2"], "recipe.image_size=2"),
    (["--set", "recipe.label_smoothing=1.5"], "recipe.label_smoothing=1.5"),
    (["--set", "recipe.gamma=2"], "recipe.gamma=2"),
    (["--set", "recipe.nosuchkey=1"], "nosuchkey"),
    (["--backend", "eagr"], "Unknown backend 'eagr'. Did you mean: eager?"),
    (["--backend", "tensorrt"], "none of the backends ['tensorrt'] can run on cpu"),
    (["--compressor", "tayler"], "Did you mean: taylor?"),
]


@pytest.mark.parametrize(("extra", "message"), BAD_RUNS, ids=[" ".join(e) for e, _ in BAD_RUNS])
def test_bad_run_input_is_refused_before_any_work(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    results = tmp_path / "results"
    code = main(["run", "--workload", "lenet3", "--results", str(results), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not results.exists()  # nothing written


def test_recipe_values_are_checked_by_the_recipe_itself() -> None:
    from workloads.base import Recipe

    with pytest.raises(ValueError, match=r"recipe.epochs=0 .*; recipe.lr=nan"):
        Recipe(epochs=0, batch_size=8, lr=float("nan"))
    assert Recipe(epochs=1, batch_size=8, max_train_samples=None).max_train_samples is None


def _run(results: Path, *extra: str) -> list[str]:
    return ["run", "--workload", "lenet3", "--results", str(results), "--quiet", *extra]


@pytest.mark.parametrize("where", ["root", "runs", "baselines"])
def test_a_results_path_that_is_a_file_is_refused(tmp_path: Path, capsys, where: str) -> None:
    root = tmp_path / "results"
    target = root if where == "root" else root / where
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("not a folder")
    assert main(_run(root)) == 2
    err = capsys.readouterr().err
    assert f"results path {target} is a file" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted({"results", where} - {"root"} | {"results"})


def test_empty_results_and_bad_data_root_are_refused(tmp_path: Path, capsys) -> None:
    assert main(["run", "--workload", "lenet3", "--results", "", "--quiet"]) == 2
    assert "--results is empty" in capsys.readouterr().err
    results = tmp_path / "results"
    assert main(_run(results, "--data-root", str(tmp_path / "nowhere"))) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(_run(results, "--data-root", str(tmp_path / "afile"))) == 2
    assert "is a file" in capsys.readouterr().err
    assert not results.exists()


BAD_SUITES = [
    ("defaultz: {profile: tiny}\nruns: [{workload: lenet3}]\n", "unknown top-level key(s) ['defaultz']"),
    ("runs: []\n", "'runs' is empty"),
    ("defaults: [profile, tiny]\nruns: [{workload: lenet3}]\n", "'defaults' must be a mapping"),
    ("runs: [{workload: lenet3, set: [epochs, 1]}]\n", "'set' must be a mapping"),
    ("defaults: {set: [1]}\nruns: [{workload: lenet3}]\n", "defaults: 'set' must be a mapping"),
    ("runs: [{workload: {name: lenet3}}]\n", "workload must be a value or a list of values"),
    ("runs: [{workload: lenet3, seed: 'one'}]\n", "seed must be a whole number"),
    ("runs: [{workload: [[lenet3]]}]\n", "workload must be a value or a list of values"),
    ("runs: [{workload: lenet3, backends: 'eager,onnxruntime'}]\n", "backends must be a list of names"),
    ("runs: [{workload: lenet3, set: {recipe.epochs: [[1, 2]]}}]\n", "recipe.epochs must be a value"),
    ("runs: lenet3\n", "a suite is a mapping with a 'runs' list"),
    ("runs: [lenet3]\n", "runs[0] must be a mapping"),
    ("runs: [{workload: lenet3, epochz: 1}]\n", "unknown key(s) ['epochz']"),
    (": : :\n", "not valid YAML"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SUITES, ids=[m for _, m in BAD_SUITES])
@pytest.mark.parametrize("verb", ["validate", "suite"])
def test_bad_suite_files_are_refused_by_validate_and_suite(tmp_path: Path, capsys, verb, text, message) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    extra = ["--results", str(tmp_path / "results")] if verb == "suite" else []
    assert main([verb, str(path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "results").exists()


def test_a_suite_path_that_is_a_directory_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["validate", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
