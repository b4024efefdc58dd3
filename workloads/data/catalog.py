"""The datasets every reader knows, for ``python -m harness ls datasets``."""

from __future__ import annotations

import fnmatch

from workloads.data.images import IMAGE_DATASETS


def dataset_rows(pattern: str | None = None) -> list[tuple]:
    rows: list[tuple] = [("NAME", "TASK", "CLASSES", "SOURCE")]
    for name, spec in sorted(IMAGE_DATASETS.items()):
        if pattern is None or fnmatch.fnmatch(name, pattern):
            rows.append((name, "image-classification", spec.num_classes, spec.source))
    return rows
