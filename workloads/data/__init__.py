"""Dataset readers for the workloads (real file formats; embedded small data for tests and the default run)."""

from __future__ import annotations

from workloads.data.errors import DatasetFormatError, DatasetNotFoundError

__all__ = ["DatasetFormatError", "DatasetNotFoundError"]
