"""What a step writes while it runs: ``OUT/steps/<name>.json``, rewritten atomically after every figure.

A step function receives a :class:`StepContext`, records its figures as it measures them (so that a step killed at
its time limit still leaves what it had measured), and raises :class:`StepSkipped` when it cannot run here.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness.store import atomic_write_text, dumps

STEPS_DIR = "steps"
PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the folder holding harness/, tests/, pyproject.toml


class StepSkipped(Exception):
    """The step cannot run here; the message is the reason recorded."""


class StepFailed(RuntimeError):
    """The step ran and found a problem (a failed test, a kernel that is not bit-exact)."""


def step_file(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / STEPS_DIR / f"{name}.json"


def read_step(out_dir: Path, name: str) -> dict[str, Any] | None:
    """The step's last written state, or None when it wrote nothing readable."""
    try:
        data = json.loads(step_file(out_dir, name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class StepContext:
    """Handed to a step function: where to write, on which device, until when, and how to record figures.

    Args:
        name: the step's name.
        out_dir: the kit's output folder.
        device: ``"cuda"`` or ``"cpu"`` (the device the kit decided to use).
        deadline: ``time.time()`` by which the step must be done (it is killed shortly after).
        budget_s: the kit's total budget (steps may size optional work with it).
    """

    def __init__(self, name: str, out_dir: Path, device: str, deadline: float, budget_s: float) -> None:
        self.name, self.out_dir, self.device = name, Path(out_dir), device
        self.deadline, self.budget_s = deadline, budget_s
        self.figures: dict[str, Any] = {}
        self.notes: list[str] = []
        self.state: dict[str, Any] = {"name": name, "status": "running", "device": device, "started_at": time.time()}

    @property
    def work_dir(self) -> Path:
        """``OUT/<step name>/``: the step's own artifacts."""
        path = self.out_dir / self.name
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def cache_dir(self) -> Path:
        """``OUT/cache/``: shared between steps (built models, compiler caches); large, safe to delete."""
        path = self.out_dir / "cache"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remaining(self) -> float:
        """Seconds left before the deadline."""
        return self.deadline - time.time()

    def record(self, key: str, value: Any) -> None:
        """Store one figure (any JSON-able value) and rewrite the step file."""
        self.figures[key] = value
        self.flush()

    def note(self, text: str) -> None:
        """A sentence for the reader (a choice made, a limitation); printed to the log too."""
        self.notes.append(text)
        print(f"[{self.name}] {text}", flush=True)
        self.flush()

    def flush(self, **state: Any) -> None:
        self.state.update(state)
        payload = {**self.state, "figures": self.figures, "notes": self.notes}
        atomic_write_text(step_file(self.out_dir, self.name), dumps(payload))
