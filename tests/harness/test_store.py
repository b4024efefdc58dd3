from __future__ import annotations

import json
import os

import pytest

from harness.store import CorruptRecordError, ResultsStore, atomic_write_text


def test_write_and_read_round_trip_with_nan_as_null(tmp_path):
    store = ResultsStore(tmp_path)
    store.create_run_dir("r1")
    path = store.write({"run_id": "r1", "status": "ok", "value": float("nan"), "config_hash": "h"})
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and data["value"] is None
    assert store.find_completed("h")["run_id"] == "r1"
    assert store.find_completed("other") is None


def test_record_requires_run_id_and_status(tmp_path):
    with pytest.raises(ValueError, match="lacks 'status'"):
        ResultsStore(tmp_path).write({"run_id": "x"})


def test_create_run_dir_refuses_existing_record(tmp_path):
    store = ResultsStore(tmp_path)
    store.create_run_dir("r1")
    store.write({"run_id": "r1", "status": "ok"})
    with pytest.raises(FileExistsError, match="append-only"):
        store.create_run_dir("r1")


def test_corrupt_records_are_reported_by_name_and_skipped(tmp_path):
    store = ResultsStore(tmp_path)
    store.write({"run_id": "good", "status": "ok"})
    bad = store.run_dir("bad") / "record.json"
    bad.parent.mkdir(parents=True)
    bad.write_text("{ not json")
    wrong = store.run_dir("wrong") / "record.json"
    wrong.parent.mkdir(parents=True)
    wrong.write_text("[1, 2]")
    loaded = store.load_all()
    assert [r["run_id"] for r in loaded.records] == ["good"]
    assert len(loaded.errors) == 2
    assert any("bad/record.json" in e for e in loaded.errors)
    with pytest.raises(CorruptRecordError, match="not a run record"):
        store.read(wrong)


def test_failed_run_is_kept_but_not_counted_as_completed(tmp_path):
    store = ResultsStore(tmp_path)
    store.write({"run_id": "f", "status": "failed", "config_hash": "h", "error": {"message": "boom"}})
    assert store.find_completed("h") is None
    assert store.load_all().records[0]["error"]["message"] == "boom"


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write_text(target, "old")

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]  # no temp file left behind


def test_a_run_stopped_by_sigterm_is_recorded_as_interrupted(tmp_path) -> None:
    import json
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    results = tmp_path / "results"
    command = [sys.executable, "-m", "harness", "run", "--workload", "lenet3", "--results", str(results), "--quiet"]
    command += ["--set", "recipe.epochs=500", "--set", "recipe.max_train_samples=256"]
    proc = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(results.glob("runs/*/record.json")):
        time.sleep(0.2)
    time.sleep(1.0)  # well inside baseline training
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    record = json.loads(next(results.glob("runs/*/record.json")).read_text())
    assert proc.returncode == 130 and "interrupted" in err
    assert record["status"] == "interrupted" and record["error"]["type"] == "Terminated"
    assert record["process"]["pid"] == proc.pid and record["finished_at"]
