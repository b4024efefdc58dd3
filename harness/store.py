"""Results store: one append-only JSON RunRecord per run plus an artifacts folder.

Layout: ``ROOT/runs/<run_id>/record.json`` with ``checkpoint``, raw latency samples and other artifacts beside it;
``ROOT/baselines/<key>.pt`` caches dense baselines. Writes are atomic (temporary file + rename). A record that cannot
be parsed is reported by name and skipped; it never stops ``report`` or ``export``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RECORD_FILE = "record.json"


class CorruptRecordError(ValueError):
    pass


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (same-directory temp file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


def _sanitize(obj: Any) -> Any:
    """JSON has no NaN/Inf: store them as null (a missing measurement is null with a reason elsewhere)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _sanitize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_sanitize(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(_sanitize(json.loads(json.dumps(obj, default=_json_default))), indent=2, sort_keys=True)


@dataclass
class LoadResult:
    records: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class ResultsStore:
    """Reads and writes run records under ``root``."""

    def __init__(self, root: str | Path = "results") -> None:
        self.root = Path(root)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    @property
    def baselines_dir(self) -> Path:
        return self.root / "baselines"

    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def create_run_dir(self, run_id: str) -> Path:
        directory = self.run_dir(run_id)
        if (directory / RECORD_FILE).exists():
            raise FileExistsError(f"Run {run_id} already has a record at {directory}; records are append-only")
        directory.mkdir(parents=True, exist_ok=True)
        return directory

    def write(self, record: dict[str, Any]) -> Path:
        """Atomically write a record (``run_id`` and ``status`` required)."""
        for key in ("run_id", "status"):
            if key not in record:
                raise ValueError(f"Run record lacks {key!r}")
        record = {"schema_version": SCHEMA_VERSION, **record}
        path = self.run_dir(record["run_id"]) / RECORD_FILE
        atomic_write_text(path, dumps(record))
        return path

    def read(self, path: str | Path) -> dict[str, Any]:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptRecordError(f"{path}: not a readable JSON record ({exc})") from exc
        if not isinstance(data, dict) or "run_id" not in data or "status" not in data:
            raise CorruptRecordError(f"{path}: JSON is not a run record (needs 'run_id' and 'status')")
        if data.get("schema_version", 0) > SCHEMA_VERSION:
            raise CorruptRecordError(
                f"{path}: schema_version {data['schema_version']} is newer than this suite's {SCHEMA_VERSION}; upgrade"
            )
        return data

    def iter_paths(self) -> Iterator[Path]:
        if self.runs_dir.is_dir():
            yield from sorted(self.runs_dir.glob(f"*/{RECORD_FILE}"))

    def load_all(self) -> LoadResult:
        """Every readable record; corrupt ones are listed in ``errors`` by path, never raised."""
        result = LoadResult()
        for path in self.iter_paths():
            try:
                result.records.append(self.read(path))
            except CorruptRecordError as exc:
                result.errors.append(str(exc))
        return result

    def find_completed(self, config_hash: str) -> dict[str, Any] | None:
        """The first successful record of an identical resolved config (used by ``suite`` to resume)."""
        for record in self.load_all().records:
            if record.get("config_hash") == config_hash and record.get("status") == "ok":
                return record
        return None
