from __future__ import annotations

import pytest

from harness.suite_file import SuiteError, expand_suite, load_suite


def test_list_values_expand_into_a_grid_and_backends_list_is_one_value():
    data = {
        "defaults": {"profile": "tiny", "set": {"recipe.epochs": 1}},
        "runs": [
            {
                "workload": ["resnet18", "resnet50"],
                "compressor": "none",
                "backends": ["eager", "onnxruntime"],
                "set": {"recipe.lr": [0.1, 0.01]},
            },
            {"workload": "resnet18", "backends": [["eager"], ["onnxruntime"]]},
        ],
    }
    runs = expand_suite(data)
    assert len(runs) == 2 * 2 + 2
    assert runs[0]["backends"] == ["eager", "onnxruntime"]
    assert {r["set"]["recipe.lr"] for r in runs[:4]} == {0.1, 0.01}
    assert all(r["set"]["recipe.epochs"] == 1 for r in runs)
    assert [r["backends"] for r in runs[4:]] == [["eager"], ["onnxruntime"]]


def test_unknown_keys_and_bad_shapes_fail(tmp_path):
    with pytest.raises(SuiteError, match="unknown key"):
        expand_suite({"runs": [{"workload": "resnet18", "wokload": "x"}]})
    path = tmp_path / "s.yaml"
    path.write_text("just: a mapping\n")
    with pytest.raises(SuiteError, match="'runs' list"):
        load_suite(path)
    with pytest.raises(SuiteError, match="does not exist"):
        load_suite(tmp_path / "missing.yaml")


def test_shipped_suites_expand(tmp_path):
    from pathlib import Path

    for path in sorted(Path(__file__).resolve().parents[2].joinpath("suite").glob("*.yaml")):
        assert expand_suite(load_suite(path)), path
