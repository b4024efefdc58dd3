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
