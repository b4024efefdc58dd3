"""Pre-flight checks that ``prepare`` runs before any training: a bad value fails here with a message that names it
and the fix (the CLI exits 2), and nothing has been written yet. Recipe values are checked by ``Recipe`` itself,
suite files by :mod:`harness.suite_file`, names by the registries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.backends import BACKENDS, BackendUnavailable


def check_paths(results: str, data_root: str | None) -> None:
    """Before any training: the results folder can be written (it and its runs/ and baselines/ are folders or absent,
    and the nearest existing one is writable), and a given --data-root is an existing folder. Nothing is created."""
    if not str(results).strip():
        raise ValueError("--results is empty; give a folder, e.g. --results results")
    root = Path(results)
    for path in (root, root / "runs", root / "baselines"):
        if path.exists() and not path.is_dir():
            raise ValueError(f"results path {path} is a file, not a folder; choose another --results folder")
    existing = next(p for p in (root, *root.absolute().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"results folder {existing} is not writable; choose another --results folder")
    if data_root is not None:
        if not Path(data_root).exists():
            raise ValueError(f"--data-root {data_root} does not exist; give the folder that holds the datasets")
        if not Path(data_root).is_dir():
            raise ValueError(f"--data-root {data_root} is a file; give the folder that holds the datasets")


def check_backends(names: Any, device: str) -> None:
    """Before any training: every backend name is registered, and at least one of them can run on ``device``."""
    if isinstance(names, str) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError(f"backends must be a list of names, got {names!r}; e.g. --backend eager --backend onnxruntime")
    reasons = {}
    for name in names:
        backend = BACKENDS.get(name)()  # an unknown name raises with the close matches and the full list
        try:
            backend.check_available(device)
        except BackendUnavailable as exc:
            reasons[name] = str(exc)
    if len(reasons) == len(names):
        detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
        raise RuntimeError(f"none of the backends {list(names)} can run on {device} ({detail}); add --backend eager")
