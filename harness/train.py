"""The Trainer: epochs over a workload's data with its recipe, callbacks for compressors, progress and checkpoints."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from harness.progress import bar_disable, say
from harness.safe_load import load_tensors
from workloads.base import Recipe, Workload


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss; the run stops instead of training on garbage."""


class Callback:
    """Hooks a compressor uses to change training (masks, gates, quantizers). All methods are optional."""

    def on_train_start(self, trainer: Trainer, model: nn.Module) -> None: ...
    def after_backward(self, trainer: Trainer, model: nn.Module) -> None: ...
    def after_step(self, trainer: Trainer, model: nn.Module) -> None: ...
    def on_epoch_end(self, trainer: Trainer, model: nn.Module, metrics: dict[str, float]) -> None: ...
    def should_stop(self, trainer: Trainer) -> bool:
        return False


OptimizerFactory = Callable[[nn.Module, Recipe], torch.optim.Optimizer]


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimizer over all trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    raise ValueError(f"Unknown optimizer {recipe.optimizer!r} in recipe; use sgd, adam or adamw")


def make_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, epochs: int) -> Any:
    """Per-epoch LR schedule from the recipe."""
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if recipe.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=recipe.step_size, gamma=recipe.gamma)
    if recipe.schedule == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if recipe.schedule == "exponential":
        # constant lr for `step_size` epochs, then x`gamma` after every epoch (Zaremba et al. 2014, section 4)
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: recipe.gamma ** max(0, epoch + 1 - recipe.step_size)
        )
    raise ValueError(f"Unknown schedule {recipe.schedule!r} in recipe; use cosine, step, exponential or none")


class Trainer:
    """Trains a model with a workload's loss and recipe.

    Args:
        workload: supplies data, loss and evaluation.
        device: torch device string.
        recipe: overrides the workload's recipe (e.g. a compressor's fine-tuning recipe).
        callbacks: compressor hooks.
        optimizer_factory: replaces the recipe's optimizer (e.g. Madam).
        checkpoint_path: written atomically at every epoch end; ``resume=True`` in :meth:`fit` continues from it.
        name: shown in the progress bar ("baseline", "finetune", ...).
    """

    def __init__(
        self,
        workload: Workload,
        device: str = "cpu",
        recipe: Recipe | None = None,
        callbacks: Sequence[Callback] = (),
        optimizer_factory: OptimizerFactory | None = None,
        checkpoint_path: str | Path | None = None,
        name: str = "train",
        progress: bool = True,
    ) -> None:
        self.workload = workload
        self.device = device
        self.recipe = recipe or workload.recipe
        self.callbacks = list(callbacks)
        self.optimizer_factory = optimizer_factory or make_optimizer
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.name = name
        self.progress = progress
        self.optimizer: torch.optim.Optimizer | None = None
        self.step = 0
        self.epoch = 0
        self.history: list[dict[str, float]] = []

    def fit(self, model: nn.Module, epochs: int | None = None, resume: bool = False) -> list[dict[str, float]]:
        """Train for ``epochs`` (default: the recipe's) and return per-epoch metrics."""
        epochs = self.recipe.epochs if epochs is None else epochs
        model.to(self.device)
        self.optimizer = self.optimizer_factory(model, self.recipe)
        scheduler = make_scheduler(self.optimizer, self.recipe, epochs)
        start_epoch = self._maybe_resume(model, scheduler) if resume else 0
        train_loader = self.workload.dataloader("train")
        val_loader = self.workload.dataloader("val", shuffle=False)
        for cb in self.callbacks:
            cb.on_train_start(self, model)
        self._t0, self._start_epoch = time.perf_counter(), start_epoch
        for epoch in range(start_epoch, epochs):
            self.epoch = epoch
            train_loss = self._train_epoch(model, train_loader, epoch, epochs)
            metrics = {"epoch": float(epoch + 1), "train_loss": train_loss, "lr": self.optimizer.param_groups[0]["lr"]}
            metrics.update({f"val_{k}": v for k, v in self.workload.evaluate(model, val_loader, self.device).items()})
            scheduler.step()
            for cb in self.callbacks:
                cb.on_epoch_end(self, model, metrics)
            self.history.append(metrics)
            self._log_epoch(metrics, epochs)
            self._save_checkpoint(model, scheduler, epoch)
            if any(cb.should_stop(self) for cb in self.callbacks):
                break
        return self.history

    def _train_epoch(self, model: nn.Module, loader: Any, epoch: int, epochs: int) -> float:
        assert self.optimizer is not None
        model.train()
        total, count = 0.0, 0
        bar = tqdm(
            loader, desc=f"[{self.name}] epoch {epoch + 1}/{epochs}", leave=False, disable=bar_disable(self.progress)
        )
        for batch in bar:
            batch = self.workload.move_batch(batch, self.device)
            loss = self.workload.loss(model, batch)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(
                    f"[{self.name}] loss became {loss.item()} at epoch {epoch + 1}, step {self.step}. "
                    f"Lower the learning rate (--set recipe.lr=...) or enable gradient clipping "
                    f"(--set recipe.grad_clip=1.0); current lr={self.optimizer.param_groups[0]['lr']:.3g}."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for cb in self.callbacks:
                cb.after_backward(self, model)
            if self.recipe.grad_clip:
                nn.utils.clip_grad_norm_(clipped_tensors(model), self.recipe.grad_clip)
            self.optimizer.step()
            for cb in self.callbacks:
                cb.after_step(self, model)
            self.step += 1
            n = self.workload.batch_size_of(batch)
            total += float(loss.detach()) * n
            count += n
            bar.set_postfix(loss=f"{total / count:.4f}")
            if any(cb.should_stop(self) for cb in self.callbacks):
                break
        return total / max(count, 1)

    def _log_epoch(self, metrics: dict[str, float], epochs: int) -> None:
        metric = self.workload.info.metric
        done = int(metrics["epoch"])
        elapsed = time.perf_counter() - self._t0
        eta = elapsed / max(done - self._start_epoch, 1) * (epochs - done)
        value = metrics.get(f"val_{metric}", math.nan)
        say(
            f"[{self.name}] epoch {done}/{epochs}: train_loss={metrics['train_loss']:.4f} "
            f"val_{metric}={value:.3f} ({elapsed:.0f}s, ETA {eta:.0f}s)"
        )

    def _save_checkpoint(self, model: nn.Module, scheduler: Any, epoch: int) -> None:
        if self.checkpoint_path is None or self.optimizer is None:
            return
        state = {
            "model": model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "epoch": epoch,
            "step": self.step,
            "history": self.history,
        }
        atomic_torch_save(state, self.checkpoint_path)

    def _maybe_resume(self, model: nn.Module, scheduler: Any) -> int:
        if self.checkpoint_path is None or not self.checkpoint_path.is_file():
            return 0
        state = load_tensors(self.checkpoint_path, map_location=self.device)
        model.load_state_dict(state["model"])
        assert self.optimizer is not None
        self.optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.step, self.history = state["step"], list(state["history"])
        say(f"[{self.name}] resumed from {self.checkpoint_path} after epoch {state['epoch'] + 1}")
        return int(state["epoch"]) + 1


def clipped_tensors(model: nn.Module) -> list[torch.Tensor]:
    """Every tensor whose gradient the optimizer reads: the parameters, plus what a module trained through a
    non-parameter tensor exposes with ``trained_tensors()`` (LNS layers: the decoded weight of this step), so that
    ``recipe.grad_clip`` clips a compressed model exactly like its dense baseline."""
    extra: list[torch.Tensor] = []
    for module in model.modules():
        tensors: Any = getattr(module, "trained_tensors", None)
        if callable(tensors):
            extra.extend(tensors())
    return [*model.parameters(), *extra]


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file then rename, so a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
