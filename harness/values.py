"""Parsing ``--set`` strings into typed values (compressor options, recipe overrides, workload options).

The configuration layer's own parser: compressors, recipes and workloads all convert their settings with it.
"""

from __future__ import annotations

import types
import typing
from typing import Any


def parse_value(raw: Any, annotation: Any, key: str) -> Any:
    """Convert a ``--set`` string to ``annotation`` (bool, int, float, str, Optional[...], tuple/list of those)."""
    if not isinstance(raw, str):
        return raw
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        if raw.lower() in ("none", "null"):
            return None
        return parse_value(raw, args[0], key)
    if origin in (tuple, list):
        items = [parse_value(part.strip(), args[0] if args else str, key) for part in raw.split(",") if part.strip()]
        return tuple(items) if origin is tuple else items
    try:
        if annotation is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if annotation in (int, float):
            return annotation(float(raw)) if annotation is int and "e" in raw.lower() else annotation(raw)
    except ValueError as exc:
        raise ValueError(f"Bad value {raw!r} for {key}: expected {annotation.__name__}") from exc
    return raw
