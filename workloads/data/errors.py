"""Errors raised by dataset readers: they name the files looked for and how to get them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing."""

    def __init__(self, dataset: str, searched: Sequence[str | Path], how_to_get: str) -> None:
        paths = "\n  ".join(str(p) for p in searched)
        super().__init__(
            f"Dataset {dataset!r} not found. Looked for:\n  {paths}\nHow to get it: {how_to_get}\n"
            f"Point the suite at a copy with --data-root DIR."
        )
        self.dataset = dataset
        self.searched = [str(p) for p in searched]


class DatasetFormatError(ValueError):
    """A dataset file exists but is not in the expected format."""

    def __init__(self, path: str | Path, expected: str, problem: str) -> None:
        super().__init__(f"Malformed dataset file {path}: {problem}. Expected format: {expected}")
        self.path = str(path)
