"""Loading ``.pt`` files without running code from them.

Baselines, checkpoints and exported weights hold tensors and plain data only (dicts, lists, strings, numbers), so
they load with ``torch.load(weights_only=True)``, whose unpickler refuses every other global. A file that needs more
was not written by the suite (or was tampered with): it is refused with :class:`UnsafeFileError`, never executed.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch


class UnsafeFileError(RuntimeError):
    """A ``.pt`` file that does not load as tensors and plain data."""


def load_tensors(path: str | Path, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``; a file that needs arbitrary objects raises :class:`UnsafeFileError`."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeFileError(
            f"refusing to load {path}: it holds more than tensors and plain data ({first[:300]}), so loading it "
            "could run code from the file. The suite never writes such files: delete it (a baseline or checkpoint is "
            "re-created by the next run) or load it yourself only if you trust where it came from."
        ) from exc
