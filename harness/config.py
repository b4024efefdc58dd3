"""RunConfig: the resolved settings of one run, with precedence CLI > suite YAML > defaults.

``--set key=value`` overrides are routed by prefix: ``recipe.<field>`` to the workload's recipe,
``workload.<field>`` to the workload's explicit architecture options, ``synthesis.<field>`` to the data-free
synthesis (``--train-data deepinversion``), anything else to the compressor's Config. ``tasks`` is the ordered task
sequence of a multi-task compressor (syntax in harness/tasks.py); empty for every other run.
A bare key that the compressor does not have but the recipe does goes to the recipe. Unknown keys fail.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from workloads.base import PROFILES, Recipe

DEVICES = ("cpu", "cuda")
MEASURE_PROFILES = ("smoke", "report", "quick")
# Where a data-needing compressor's training data comes from: the workload's real training split, images
# synthesized from the dense baseline by DeepInversion (compressors/deepinversion), or the N(0,1) control.
TRAIN_DATA = ("real", "deepinversion", "noise")


@dataclass
class RunConfig:
    workload: str
    compressor: str = "none"
    profile: str = "tiny"
    dataset: str | None = None
    data_root: str | None = None
    device: str = "cpu"
    seed: int = 0
    backends: list[str] = field(default_factory=lambda: ["eager"])
    measure: str = "smoke"
    compressor_args: dict[str, Any] = field(default_factory=dict)
    recipe_overrides: dict[str, Any] = field(default_factory=dict)
    workload_options: dict[str, Any] = field(default_factory=dict)
    train_data: str = "real"
    synthesis_args: dict[str, Any] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=list)
    results: str = "results"
    resume: bool = False

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"Unknown profile {self.profile!r}; use one of {list(PROFILES)}")
        if self.device not in DEVICES:
            raise ValueError(f"Unknown device {self.device!r}; use one of {list(DEVICES)}")
        if self.measure not in MEASURE_PROFILES:
            raise ValueError(f"Unknown measure profile {self.measure!r}; use one of {list(MEASURE_PROFILES)}")
        if self.train_data not in TRAIN_DATA:
            raise ValueError(f"Unknown training data {self.train_data!r}; use one of {list(TRAIN_DATA)}")
        if isinstance(self.backends, str):
            self.backends = [self.backends]
        from harness.tasks import normalise

        self.tasks = normalise(self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """The fields that define what is measured (not where it is stored or whether it resumed)."""
        data = self.to_dict()
        for key in ("results", "resume", "data_root"):
            data.pop(key)
        if not data["tasks"]:
            data.pop("tasks")  # single-task runs keep the hashes they had before task sequences existed
        return data

    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.identity(), sort_keys=True, default=str).encode()).hexdigest()[:16]


FIELD_NAMES = {f.name for f in dataclasses.fields(RunConfig)}
RECIPE_FIELDS = {f.name for f in dataclasses.fields(Recipe)}


def parse_set_items(items: list[str]) -> dict[str, str]:
    """``["a=1", "recipe.lr=0.1"]`` -> dict; a malformed item names itself and the expected form."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"Bad --set item {item!r}; expected key=value, e.g. --set sparsity=0.3")
        parsed[key.strip()] = value.strip()
    return parsed


def route_overrides(values: dict[str, Any], compressor_fields: set[str]) -> dict[str, dict[str, Any]]:
    """Split ``--set`` values into compressor args, recipe overrides and workload options."""
    routed: dict[str, dict[str, Any]] = {
        "compressor_args": {}, "recipe_overrides": {}, "workload_options": {}, "synthesis_args": {}
    }  # fmt: skip
    for key, value in values.items():
        if key.startswith("synthesis."):
            routed["synthesis_args"][key[10:]] = value
        elif key.startswith("recipe."):
            routed["recipe_overrides"][key[7:]] = value
        elif key.startswith("workload."):
            routed["workload_options"][key[9:]] = value
        elif key in compressor_fields:
            routed["compressor_args"][key] = value
        elif key in RECIPE_FIELDS:
            routed["recipe_overrides"][key] = value
        else:
            raise ValueError(
                f"Unknown --set key {key!r}. Compressor keys: {sorted(compressor_fields) or 'none'}; "
                f"recipe keys (recipe.<key>): {sorted(RECIPE_FIELDS)}; workload options use workload.<key>; "
                f"data-free synthesis settings use synthesis.<key>"
            )
    for key in routed["recipe_overrides"]:
        if key not in RECIPE_FIELDS:
            raise ValueError(f"Unknown recipe key {key!r}. Valid recipe keys: {sorted(RECIPE_FIELDS)}")
    return routed


def convert_recipe_overrides(values: dict[str, Any]) -> dict[str, Any]:
    """Convert recipe override strings to the Recipe fields' types."""
    import typing

    from harness.values import parse_value

    hints = typing.get_type_hints(Recipe)
    return {key: parse_value(value, hints[key], f"recipe.{key}") for key, value in values.items()}


def resolve(cli: dict[str, Any], suite_entry: dict[str, Any] | None = None) -> RunConfig:
    """Merge defaults < suite entry < CLI (``None`` on the CLI means "not given")."""
    merged: dict[str, Any] = {}
    for source in (suite_entry or {}, {k: v for k, v in cli.items() if v is not None}):
        for key, value in source.items():
            if key not in FIELD_NAMES:
                raise ValueError(f"Unknown run setting {key!r}. Valid settings: {sorted(FIELD_NAMES)}")
            if key in ("compressor_args", "recipe_overrides", "workload_options", "synthesis_args"):
                merged[key] = {**merged.get(key, {}), **value}
            else:
                merged[key] = value
    if "workload" not in merged:
        raise ValueError("No workload given: pass --workload NAME (see 'python -m harness ls workloads')")
    return RunConfig(**merged)
