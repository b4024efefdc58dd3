"""Suite files: YAML lists of runs; list values expand into a grid.

```yaml
defaults: {profile: tiny, measure: smoke}
runs:
  - workload: resnet50
    compressor: [none, taylor]          # a list expands: two runs
    dataset: digits
    set: {sparsity: [0.3, 0.5]}         # --set values; lists expand too
    backends: [eager, onnxruntime]      # 'backends' is itself a list: a list of lists expands
  - workload: vgg16_bn
    compressor: packnet
    tasks: [fashion-mnist, split-digits:2]   # 'tasks' too: one run's sequence (a list of lists expands)
```
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from harness.config import FIELD_NAMES, RunConfig, resolve, route_overrides

SUITE_KEYS = (FIELD_NAMES - {"compressor_args", "recipe_overrides", "workload_options", "synthesis_args"}) | {"set"}
TOP_LEVEL_KEYS = {"defaults", "runs"}
LIST_VALUED = ("backends", "tasks")  # one run's value is itself a list; a list of lists is a grid axis


class SuiteError(ValueError):
    pass


def load_suite(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise SuiteError(f"Suite file {path} is a directory; give the path of a .yaml file")
    if not path.is_file():
        raise SuiteError(f"Suite file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("runs"), list):
        raise SuiteError(f"{path}: a suite is a mapping with a 'runs' list (and optional 'defaults')")
    unknown = sorted(str(k) for k in set(data) - TOP_LEVEL_KEYS)
    if unknown:
        raise SuiteError(f"{path}: unknown top-level key(s) {unknown}; a suite has only {sorted(TOP_LEVEL_KEYS)}")
    if not data["runs"]:
        raise SuiteError(f"{path}: 'runs' is empty; list at least one run")
    if data.get("defaults") is not None and not isinstance(data["defaults"], dict):
        raise SuiteError(f"{path}: 'defaults' must be a mapping of key: value, got {type(data['defaults']).__name__}")
    return data


def _check_value(where: str, key: str, value: Any) -> None:
    """A run's value must be a scalar, or a list of scalars (a grid axis); 'backends' a list of names or of lists."""
    items = value if isinstance(value, list) else [value]
    if key in LIST_VALUED and isinstance(value, list) and value and not isinstance(value[0], list):
        items = [value]  # one run's list of backends / tasks
    for item in items:
        if key == "tasks" and isinstance(item, str):
            continue  # one run's sequence as a comma-separated string
        if key in LIST_VALUED:
            if not isinstance(item, list) or not all(isinstance(n, str) for n in item) or not item:
                example = "[eager, onnxruntime]" if key == "backends" else "[fashion-mnist, split-digits:2]"
                raise SuiteError(f"{where}: {key} must be a list of names, e.g. {example}; got {value!r}")
        elif isinstance(item, (dict, list)):
            raise SuiteError(f"{where}: {key} must be a value or a list of values, got {value!r}")
        elif key == "seed" and (isinstance(item, bool) or not isinstance(item, int)):
            raise SuiteError(f"{where}: seed must be a whole number, got {item!r}")


def _grid(entry: dict[str, Any]) -> list[dict[str, Any]]:
    axes: list[list[tuple[str, Any]]] = []
    for key, value in entry.items():
        if key == "set":
            continue
        is_axis = isinstance(value, list) and (key not in LIST_VALUED or (value and isinstance(value[0], list)))
        axes.append([(key, v) for v in value] if is_axis else [(key, value)])
    sets = entry.get("set") or {}
    if not isinstance(sets, dict):
        raise SuiteError(f"'set' must be a mapping of key: value, got {sets!r}")
    for key, value in sets.items():
        values = value if isinstance(value, list) else [value]
        axes.append([(f"set:{key}", v) for v in values])
    runs = []
    for combo in itertools.product(*axes):
        run = {k: v for k, v in combo if not k.startswith("set:")}
        run["set"] = {k[4:]: v for k, v in combo if k.startswith("set:")}
        runs.append(run)
    return runs


def expand_suite(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Suite entries after merging defaults and expanding list values; each is a RunConfig-ready dict."""
    defaults = data.get("defaults") or {}
    expanded = []
    for index, entry in enumerate(data["runs"]):
        if not isinstance(entry, dict):
            raise SuiteError(f"runs[{index}] must be a mapping, got {entry!r}")
        for where, sets in (("defaults", defaults.get("set")), (f"runs[{index}]", entry.get("set"))):
            if sets is not None and not isinstance(sets, dict):
                raise SuiteError(f"{where}: 'set' must be a mapping of key: value, got {sets!r}")
        merged = {**defaults, **entry, "set": {**(defaults.get("set") or {}), **(entry.get("set") or {})}}
        unknown = sorted(str(k) for k in set(merged) - SUITE_KEYS)
        if unknown:
            raise SuiteError(f"runs[{index}]: unknown key(s) {unknown}. Valid keys: {sorted(SUITE_KEYS)}")
        for key, value in merged.items():
            if key != "set":
                _check_value(f"runs[{index}]", key, value)
        for key, value in (merged.get("set") or {}).items():
            _check_value(f"runs[{index}].set", str(key), value)
        expanded.extend(_grid(merged))
    return expanded


def to_run_config(entry: dict[str, Any], cli: dict[str, Any]) -> RunConfig:
    """A suite entry as a RunConfig (CLI values win), with its ``set`` values routed and validated."""
    from compressors import COMPRESSORS

    entry = dict(entry)
    sets = {k: str(v) for k, v in (entry.pop("set", None) or {}).items()}
    compressor = cli.get("compressor") or entry.get("compressor", "none")
    fields = COMPRESSORS.get(compressor).Config.field_names()
    cli_sets = cli.pop("set_items", None) or {}
    entry.update(route_overrides({**sets, **cli_sets}, fields))
    return resolve(cli, entry)
