"""The built-in plug-ins' ``ls`` rows, kept in ``ls_catalog.json`` so that listing them imports no torch.

``ls workloads | compressors | datasets`` answer from the catalog unless an entry-point plug-in that it does not
know is installed (then the live, importing listing is used). ``tests/harness/test_cli_fast.py`` fails when the
catalog and the live registry differ; ``python -m harness ls --refresh-catalog`` rewrites it. ``ls backends`` is
always live: availability is a fact of this machine, not of the code.
"""

from __future__ import annotations

import fnmatch
import json
from importlib import metadata
from pathlib import Path

CATALOG = Path(__file__).with_name("ls_catalog.json")
ENTRY_POINT_GROUPS = {"workloads": "compression_bench.workloads", "compressors": "compression_bench.compressors"}
CATALOGUED = ("workloads", "compressors", "datasets")


def cached_rows(what: str, pattern: str | None) -> list[tuple] | None:
    """The catalogued rows of ``what`` filtered by ``pattern``, or None when the catalog cannot answer."""
    if what not in CATALOGUED or not CATALOG.exists():
        return None
    catalog = json.loads(CATALOG.read_text())
    header, *rows = [tuple(r) for r in catalog[what]]
    group = ENTRY_POINT_GROUPS.get(what)
    if group and any(ep.name not in {r[0] for r in rows} for ep in metadata.entry_points(group=group)):
        return None  # a third-party plug-in: only the live listing knows its row
    return [header, *(r for r in rows if pattern is None or fnmatch.fnmatch(str(r[0]), pattern))]


def write_catalog(live: dict[str, list[tuple]]) -> Path:
    """Rewrite the catalog from the live listings (``{what: rows}``)."""
    from harness.store import atomic_write_text

    atomic_write_text(CATALOG, json.dumps({k: [list(r) for r in v] for k, v in live.items()}, indent=1) + "\n")
    return CATALOG


def shadowing_plugins(what: str) -> list[str]:
    """Installed entry-point plug-ins whose name is a built-in one (the registry ignores them)."""
    group = ENTRY_POINT_GROUPS.get(what)
    if group is None or not CATALOG.exists():
        return []
    builtin = {row[0] for row in json.loads(CATALOG.read_text())[what][1:]}
    return [
        f"plug-in {ep.name!r} ({ep.value}, from {getattr(ep.dist, 'name', None) or 'an unknown distribution'}) reuses "
        "a built-in name and is ignored; rename it in its entry point"
        for ep in metadata.entry_points(group=group)
        if ep.name in builtin
    ]
