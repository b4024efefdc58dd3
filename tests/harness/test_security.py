"""Opening a results folder or a dataset never runs someone else's code: crafted files are refused, nothing runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.safe_load import UnsafeFileError, load_tensors


class CreatesAFile:
    """Unpickling this calls ``os.system('touch MARKER')``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": CreatesAFile(marker), "info": {}}, path)


def _lenet3():
    from workloads import WORKLOADS

    overrides = {"epochs": 1, "max_train_samples": 64, "max_val_samples": 32}
    return WORKLOADS.get("lenet3")(profile="tiny", recipe_overrides=overrides)


def test_plain_state_dicts_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"model": torch.nn.Linear(2, 2).state_dict(), "info": {"history": [{"loss": 1.0}], "k": None}}, path)
    assert load_tensors(path)["model"]["weight"].shape == (2, 2)


def test_crafted_baseline_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    from harness.baseline import baseline_key, get_baseline
    from harness.store import ResultsStore

    workload, store, marker = _lenet3(), ResultsStore(tmp_path / "results"), tmp_path / "ran"
    plant(store.baselines_dir / f"{baseline_key(workload, 0)}.pt", marker)
    with pytest.raises(UnsafeFileError, match="refusing to load .*baselines"):
        get_baseline(workload, 0, "cpu", store)
    assert not marker.exists()


def test_crafted_checkpoint_is_refused_on_resume(tmp_path: Path) -> None:
    from harness.train import Trainer

    workload, marker, checkpoint = _lenet3(), tmp_path / "ran", tmp_path / "train.ckpt"
    plant(checkpoint, marker)
    trainer = Trainer(workload, checkpoint_path=checkpoint, progress=False)
    with pytest.raises(UnsafeFileError, match="train.ckpt"):
        trainer.fit(workload.build_model(), resume=True)
    assert not marker.exists()


def test_cli_names_the_refused_file_and_exits_2(tmp_path: Path) -> None:
    from harness.baseline import baseline_key

    results, marker = tmp_path / "results", tmp_path / "ran"
    plant(results / "baselines" / f"{baseline_key(_lenet3(), 0)}.pt", marker)
    command = [sys.executable, "-m", "harness", "run", "--workload", "lenet3", "--results", str(results), "--quiet"]
    command += [
        "--set",
        "recipe.epochs=1",
        "--set",
        "recipe.max_train_samples=64",
        "--set",
        "recipe.max_val_samples=32",
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 2 and "refusing to load" in done.stderr and "Traceback" not in done.stderr
    assert not marker.exists()


def test_latency_worker_refuses_a_payload_its_parent_did_not_write(tmp_path: Path, monkeypatch) -> None:
    from harness.meters import latency_worker

    marker, payload = tmp_path / "ran", tmp_path / "payload.pt"
    plant(payload, marker)
    settings = {
        "min_time_s": 0.0,
        "min_count": 1,
        "warmup_s": 0.0,
        "warmup_count": 0,
        "batch_sizes": [1],
        "processes": 1,
    }
    argv = [
        str(payload),
        "eager",
        "[0]",
        json.dumps(settings),
        "cpu",
        "1",
        str(tmp_path / "s.txt"),
        str(tmp_path / "r"),
    ]
    for digest in ("", "0" * 64):  # no digest, a wrong digest
        monkeypatch.setattr(sys, "stdin", io.StringIO(digest + "\n"))
        with pytest.raises(RuntimeError, match="not the file this process's parent wrote"):
            latency_worker.main(argv)
    assert not marker.exists()


def test_latency_worker_accepts_its_parents_payload(tmp_path: Path) -> None:
    import hashlib

    from harness.meters.latency_worker import load_verified

    payload = tmp_path / "payload.pt"
    torch.save({"model": torch.nn.Linear(2, 2), "pool": [(torch.ones(1, 2),)]}, payload)
    loaded = load_verified(payload, hashlib.sha256(payload.read_bytes()).hexdigest())
    assert isinstance(loaded["model"], torch.nn.Linear)
