from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from compressors.base import CompressorConfig
from harness.config import RunConfig, parse_set_items, resolve, route_overrides
from harness.suite_file import to_run_config


def test_precedence_cli_over_suite_over_defaults():
    suite_entry = {"workload": "resnet18", "seed": 3, "profile": "tiny", "compressor_args": {"a": "1"}}
    cli = {"seed": 7, "profile": None, "compressor_args": {"b": "2"}}
    config = resolve(cli, suite_entry)
    assert config.seed == 7  # CLI wins
    assert config.profile == "tiny"  # suite value kept when CLI gives None
    assert config.device == "cpu"  # default
    assert config.compressor_args == {"a": "1", "b": "2"}


def test_unknown_setting_and_missing_workload_fail():
    with pytest.raises(ValueError, match="Unknown run setting 'sead'"):
        resolve({"workload": "resnet18", "sead": 1})
    with pytest.raises(ValueError, match="No workload given"):
        resolve({})


def test_bad_enum_values_fail():
    with pytest.raises(ValueError, match="Unknown profile 'huge'"):
        RunConfig(workload="resnet18", profile="huge")
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        RunConfig(workload="resnet18", device="tpu")


def test_set_items_parse_and_route():
    values = parse_set_items(["sparsity=0.3", "recipe.lr=0.01", "epochs=2", "workload.hidden=64"])
    routed = route_overrides(values, compressor_fields={"sparsity"})
    assert routed["compressor_args"] == {"sparsity": "0.3"}
    assert routed["recipe_overrides"] == {"lr": "0.01", "epochs": "2"}
    assert routed["workload_options"] == {"hidden": "64"}
    with pytest.raises(ValueError, match="expected key=value"):
        parse_set_items(["oops"])
    with pytest.raises(ValueError, match="Unknown --set key 'bogus'"):
        route_overrides({"bogus": "1"}, compressor_fields={"sparsity"})
    with pytest.raises(ValueError, match="Unknown recipe key 'lrr'"):
        route_overrides({"recipe.lrr": "1"}, compressor_fields=set())


@dataclass
class _DemoConfig(CompressorConfig):
    sparsity: float = 0.3
    iterations: int = 1
    structured: bool = False
    layers: tuple[str, ...] = ()
    target: float | None = None


def test_compressor_config_from_strings_types_and_json_round_trip():
    config = _DemoConfig.from_strings(
        {"sparsity": "0.5", "iterations": "3", "structured": "true", "layers": "a,b", "target": "none"}
    )
    assert config == _DemoConfig(sparsity=0.5, iterations=3, structured=True, layers=("a", "b"), target=None)
    restored = _DemoConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored.sparsity == 0.5 and list(restored.layers) == ["a", "b"]
    with pytest.raises(ValueError, match="Unknown key"):
        _DemoConfig.from_strings({"sparsty": "0.1"})
    with pytest.raises(ValueError, match="expected int"):
        _DemoConfig.from_strings({"iterations": "three"})


def test_config_hash_ignores_storage_location():
    a = RunConfig(workload="resnet18", results="/tmp/a")
    b = RunConfig(workload="resnet18", results="/tmp/b", resume=True)
    c = RunConfig(workload="resnet18", seed=1)
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_to_run_config_validates_compressor_keys():
    config = to_run_config({"workload": "resnet18", "set": {"recipe.epochs": 1}}, {})
    assert config.recipe_overrides == {"epochs": "1"}
    with pytest.raises(ValueError, match="Unknown --set key 'sparsity'"):
        to_run_config({"workload": "resnet18", "compressor": "none", "set": {"sparsity": 0.3}}, {})
