"""Workload interface: a published model with its data, loss, metric and training recipe.

A workload owns everything task-specific (meters never interpret outputs; accuracy belongs to the workload, as in
MLPerf LoadGen). The architecture is the paper's at every profile; profiles change data size, input resolution and
epochs only. A smaller variant is an explicit, recorded option, never a silent swap.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

PROFILES = ("tiny", "paper")


RECIPE_OPTIMIZERS = ("sgd", "adam", "adamw")
RECIPE_SCHEDULES = ("cosine", "step", "exponential", "none")


@dataclass(frozen=True)
class Reference:
    """A published number and where it comes from."""

    metric: str
    value: float
    source: str
    note: str = ""


@dataclass(frozen=True)
class Recipe:
    """Training recipe of one profile. ``source`` says which paper/script it follows."""

    epochs: int
    batch_size: int
    optimizer: str = "sgd"  # RECIPE_OPTIMIZERS
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"  # RECIPE_SCHEDULES
    step_size: int = 30
    gamma: float = 0.1
    grad_clip: float | None = None
    label_smoothing: float = 0.0
    max_train_samples: int | None = None
    max_val_samples: int | None = None
    image_size: int | None = None
    source: str = ""

    def __post_init__(self) -> None:
        """Refuse values no training can use, naming the ``recipe.<field>`` key, before any work starts."""
        problems = [_recipe_problem(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
        problems = [p for p in problems if p]
        if problems:
            raise ValueError("; ".join(problems))

    def replace(self, **changes: Any) -> Recipe:
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            valid = ", ".join(f.name for f in dataclasses.fields(self))
            raise ValueError(f"Unknown recipe key(s) {unknown}. Valid recipe keys: {valid}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


POSITIVE_INTS = ("epochs", "batch_size", "step_size", "max_train_samples", "max_val_samples", "image_size")
NON_NEGATIVE_FLOATS = ("momentum", "weight_decay", "label_smoothing", "grad_clip")
CHOICES = {"optimizer": RECIPE_OPTIMIZERS, "schedule": RECIPE_SCHEDULES}


def _recipe_problem(name: str, value: Any) -> str | None:
    """What is wrong with one recipe value (None when it is fine)."""
    key = f"recipe.{name}"
    if name in CHOICES and value not in CHOICES[name]:
        return f"{key}={value!r} is not one of {', '.join(CHOICES[name])}"
    if value is None:
        return None
    if name in POSITIVE_INTS and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        return f"{key}={value!r} must be a whole number >= 1" + (
            " (or unset)" if name.startswith(("max_", "image")) else ""
        )
    if name == "image_size" and value < 8:
        return f"{key}={value} is too small to classify (use >= 8)"
    if name in ("lr", "gamma", *NON_NEGATIVE_FLOATS):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{key}={value!r} must be a finite number"
        if name == "lr" and value <= 0:
            return f"{key}={value} must be > 0"
        if name == "gamma" and not 0 < value <= 1:
            return f"{key}={value} must be in (0, 1]"
        if value < 0:
            return f"{key}={value} must be >= 0"
    if name == "label_smoothing" and value >= 1:
        return f"{key}={value} must be < 1"
    return None


@dataclass(frozen=True)
class WorkloadInfo:
    """Static facts of a workload."""

    name: str
    paper: str  # arXiv id or citation of the model's paper
    task: str  # image-classification | language-modeling | text-classification | speech-recognition
    metric: str  # primary metric key returned by evaluate()
    higher_is_better: bool
    datasets: tuple[str, ...]
    default_dataset: str
    kind: str  # cnn | mlp | rnn | transformer | speech: lets compressors declare what they fit
    references: tuple[Reference, ...] = ()
    description: str = ""


@dataclass
class WorkloadOptions:
    """Explicit architecture options; the defaults are the paper's architecture."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Workload(ABC):
    """Base class. Subclasses set ``info``, ``recipes`` (one per profile) and optionally ``Options``."""

    info: ClassVar[WorkloadInfo]
    recipes: ClassVar[dict[str, Recipe]]
    Options: ClassVar[type[WorkloadOptions]] = WorkloadOptions

    def __init__(
        self,
        profile: str = "tiny",
        dataset: str | None = None,
        data_root: str | None = None,
        options: dict[str, Any] | None = None,
        recipe_overrides: dict[str, Any] | None = None,
    ) -> None:
        if profile not in self.recipes:
            raise ValueError(
                f"Unknown profile {profile!r} for workload {self.info.name!r}. Use one of {list(self.recipes)}"
            )
        dataset = dataset or self.info.default_dataset
        if dataset not in self.info.datasets:
            raise ValueError(
                f"Workload {self.info.name!r} does not accept dataset {dataset!r}. "
                f"Accepted: {', '.join(self.info.datasets)} (default {self.info.default_dataset})"
            )
        self.profile = profile
        self.dataset = dataset
        self.data_root = data_root
        self.options = _build_options(self.Options, options or {}, self.info.name)
        self.recipe: Recipe = self.recipes[profile].replace(**(recipe_overrides or {}))

    # ---- model -------------------------------------------------------------------------------------------------
    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model with the paper's architecture."""

    # ---- data --------------------------------------------------------------------------------------------------
    @abstractmethod
    def dataloader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        """Loader for ``split`` in {'train', 'val'}; deterministic for a given seed."""

    @abstractmethod
    def example_inputs(
        self, batch_size: int, device: str | torch.device = "cpu", offset: int = 0
    ) -> tuple[torch.Tensor, ...]:
        """Real (not all-zero) model inputs of the given batch size; ``offset`` selects a different sample window."""

    def example_input_pool(self, batch_size: int, count: int = 64, device: str | torch.device = "cpu") -> list:
        """``count`` distinct input tuples to cycle through while timing (METHODOLOGY §0: >= 64 real samples)."""
        return [self.example_inputs(batch_size, device, offset=i) for i in range(count)]

    def paper_inputs(self, batch_size: int = 1) -> tuple[torch.Tensor, ...]:
        """Inputs at the paper's standard resolution, for FLOP counts that match published figures."""
        return self.example_inputs(batch_size)

    # ---- training and evaluation ---------------------------------------------------------------------------------
    def move_batch(self, batch: Any, device: str | torch.device) -> Any:
        if isinstance(batch, torch.Tensor):
            return batch.to(device, non_blocking=True)
        if isinstance(batch, dict):
            return {k: self.move_batch(v, device) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.move_batch(b, device) for b in batch)
        return batch

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        """Mean training loss of one batch (already on the model's device)."""

    @abstractmethod
    def evaluate(self, model: nn.Module, loader: Iterable, device: str | torch.device) -> dict[str, float]:
        """Metrics on ``loader``; must contain ``info.metric``."""

    def batch_size_of(self, batch: Any) -> int:
        first = batch[0] if isinstance(batch, (list, tuple)) else next(iter(batch.values()))
        return int(first.shape[0])

    def describe(self) -> dict[str, Any]:
        """What this instance is: profile, dataset, options, recipe and preprocessing (stored in the run record)."""
        return {
            "name": self.info.name,
            "paper": self.info.paper,
            "metric": self.info.metric,
            "higher_is_better": self.info.higher_is_better,
            "profile": self.profile,
            "dataset": self.dataset,
            "options": self.options.to_dict(),
            "recipe": self.recipe.to_dict(),
            "preprocessing": self.preprocessing(),
        }

    def preprocessing(self) -> dict[str, Any]:
        return {}


def _build_options(cls: type[WorkloadOptions], values: dict[str, Any], workload: str) -> WorkloadOptions:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for workload {workload!r}. Valid options: {sorted(names) or 'none'}"
        )
    return cls(**values)
