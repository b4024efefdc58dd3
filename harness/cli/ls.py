"""``ls``: list workloads, compressors, backends or datasets."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import formatter

EXAMPLES = """Examples:
  python -m harness ls workloads
  python -m harness ls compressors
  python -m harness ls workloads --pattern 'resnet*'
"""


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("ls", help="list registered plug-ins", epilog=EXAMPLES, formatter_class=formatter())
    parser.add_argument("what", choices=["workloads", "compressors", "backends", "datasets"])
    parser.add_argument("--pattern", help="shell-style filter, e.g. 'resnet*'")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    rows = LISTERS[args.what](args.pattern)
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))] if rows else []
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _workloads(pattern: str | None) -> list[tuple]:
    from workloads import WORKLOADS

    rows: list[tuple] = [("NAME", "PAPER", "KIND", "PARAMS", "DEFAULT DATASET", "DATASETS")]
    for name in WORKLOADS.names(pattern):
        info = WORKLOADS.get(name).info
        params = next((f"{r.value / 1e6:.2f}M" for r in info.references if r.metric == "params"), "-")
        rows.append((name, info.paper, info.kind, params, info.default_dataset, ",".join(info.datasets)))
    return rows


def _compressors(pattern: str | None) -> list[tuple]:
    from compressors import COMPRESSORS

    rows: list[tuple] = [("NAME", "PAPER", "KIND", "FITS", "OPTIONS")]
    for name in COMPRESSORS.names(pattern):
        cls = COMPRESSORS.get(name)
        rows.append(
            (
                name,
                cls.info.paper or "-",
                cls.info.kind,
                ",".join(cls.info.supports),
                ",".join(sorted(cls.Config.field_names())) or "-",
            )
        )
    return rows


def _backends(pattern: str | None) -> list[tuple]:
    from harness.backends import BACKENDS, BackendUnavailable

    rows: list[tuple] = [("NAME", "CPU")]
    for name in BACKENDS.names(pattern):
        try:
            BACKENDS.get(name)().check_available("cpu")
            status = "available"
        except BackendUnavailable as exc:
            status = f"unavailable: {exc}"
        rows.append((name, status))
    return rows


def _datasets(pattern: str | None) -> list[tuple]:
    from workloads.data.catalog import dataset_rows

    return dataset_rows(pattern)


LISTERS = {"workloads": _workloads, "compressors": _compressors, "backends": _backends, "datasets": _datasets}
