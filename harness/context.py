"""RunContext: what a compressor gets from the harness (trainer, data, evaluation, device, seed, phase timing, and the
task sequence of a multi-task run)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from harness.config import RunConfig
from harness.meters.energy_run import PhaseEnergyMeter
from harness.train import Callback, OptimizerFactory, Trainer
from workloads.base import Recipe, Workload


@dataclass
class RunContext:
    workload: Workload
    config: RunConfig
    run_dir: Path
    phases: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[Any] = field(default_factory=list)  # harness.tasks.Task of a multi-task run, task 1 first

    @property
    def device(self) -> str:
        return self.config.device

    @property
    def seed(self) -> int:
        return self.config.seed

    def trainer(
        self,
        name: str,
        recipe: Recipe | None = None,
        callbacks: list[Callback] | tuple[Callback, ...] = (),
        optimizer_factory: OptimizerFactory | None = None,
        workload: Workload | None = None,
    ) -> Trainer:
        """A Trainer on this run's workload (or ``workload``, e.g. a synthetic training set) and device (checkpoints
        go to the run folder)."""
        return Trainer(
            workload or self.workload,
            device=self.device,
            recipe=recipe,
            callbacks=callbacks,
            optimizer_factory=optimizer_factory,
            checkpoint_path=self.run_dir / f"checkpoint-{name}.pt",
            name=name,
        )

    def baseline_of(self, workload: Workload) -> tuple[nn.Module, dict[str, Any]]:
        """The cached (or newly trained) dense model of another workload, e.g. a distillation teacher."""
        from harness.baseline import get_baseline
        from harness.store import ResultsStore

        return get_baseline(workload, self.seed, self.device, ResultsStore(self.config.results), self.config.resume)

    def train_loader(self, batch_size: int | None = None) -> Any:
        return self.workload.dataloader("train", batch_size=batch_size)

    def val_loader(self, batch_size: int | None = None) -> Any:
        return self.workload.dataloader("val", batch_size=batch_size, shuffle=False)

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        return self.workload.evaluate(model.to(self.device), self.val_loader(), self.device)

    def log(self, message: str) -> None:
        print(f"[{self.config.compressor}] {message}", flush=True)

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Time a phase of the compression and meter its energy (recorded in the run record's ``phases``)."""
        entry: dict[str, Any] = {"name": name}
        start = time.perf_counter()
        meter = PhaseEnergyMeter(self.device)
        try:
            with meter:
                yield entry
        finally:
            entry["seconds"] = time.perf_counter() - start
            entry["energy"] = meter.result
            self.phases.append(entry)
