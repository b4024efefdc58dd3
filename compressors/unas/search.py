"""The UNAS search loop (arXiv 1912.07651 §3-4; NVlabs/unas ``darts/train_search.py`` L305-355 and
``proxylessnas/train_search.py`` ``train``/``train_init``, ``unas.py`` ``step``/``training_obj``).

1. Weight warm-up: ``warmup_epochs`` of weight updates only, each minibatch on a relaxed sample ``z~ ~ q_alpha``
   (``train_init``), with a fresh Adam at the recipe's learning rate.
2. Alternating updates, per training minibatch: an architecture step (the estimator's surrogate loss, Adam
   ``arch_lr``, wd ``1e-6``, cosine to ``arch_lr_min`` over the epochs), then a weight step on the **same** minibatch
   with the detached relaxed sample (the recipe's optimiser, cosine to ``lr / 3`` as 3e-4 -> 1e-4, grad clip).
3. The objective ``f`` of an architecture: the training cross-entropy (``objective="train"``) or the generalisation
   gap objective ``L_train + lambda |L_val - L_train|`` (``"gap"``, lambda 0.5; example ``b`` of a held-out
   minibatch is paired with training example ``b``), plus the alpha penalty ``lambda_a sum in_op0 * in_op1``
   (DARTS space, lambda_a 0.2), plus, with a target, the latency hinge ``c_t ReLU(lat - T)`` whose discrete value
   is **measured** and whose relaxed control variate is the linear surrogate (:mod:`compressors.unas.latency`).

Data: the workload's training split is cut ``train_portion`` / rest (UNAS ``--train_portion 0.9``); the rest is the
held-out minibatch stream of the gap objective and of the random-search baseline, so the validation split that
reports accuracy is never seen by the search. Deterministic for a seed (Gumbel noise from a seeded CPU generator,
seeded loaders) except for the measured latencies, which carry timing noise into the gradient as in the paper.

Random-search baseline (:func:`random_search`): ``count`` architectures drawn uniformly from the space, each scored
by the supernet's held-out loss on one minibatch (weight sharing, in training-mode BN like UNAS' ``infer``) and,
with a target, by its measured latency; the best architecture meeting the target is kept (the fastest if none
does). The default count is the search's number of architecture steps (one minibatch evaluation of sampled
architectures each), so both spend the same number of supernet evaluations.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from compressors.unas.distributions import ArchDistribution, ArchSample
from compressors.unas.estimators import RELAXATION, MovingAverage, surrogate_loss
from compressors.unas.latency import LatencyMeter, LinearSurrogate, fit_surrogate, latency_coefficient
from harness.progress import bar_disable, say
from harness.train import make_optimizer

WEIGHT_LR_MIN_RATIO = 1e-4 / 3e-4  # train_search.py: learning_rate 3e-4, learning_rate_min 1e-4


@dataclass
class SearchSettings:
    """Resolved settings of one search (the compressor's config after profile defaults)."""

    estimator: str = "unas"
    objective: str = "gap"
    gap_lambda: float = 0.5
    alpha_loss_lambda: float = 0.0
    epochs: int = 2
    warmup_epochs: int = 1
    arch_lr: float = 1e-3
    arch_lr_min: float = 3e-4
    arch_weight_decay: float = 1e-6
    temperature: float = 0.4
    soften_eps: float = 0.0
    same_alpha_minibatch: bool = False
    arch_samples: int = 1
    train_portion: float = 0.9
    batch_size: int = 32
    target_latency_ms: float = 0.0
    latency_coeff: float = 0.1
    latency_ramp_steps: int = 30000
    latency_samples: int = 100
    baseline_decay: float = 0.1
    seed: int = 0


@dataclass
class SearchResult:
    alphas: dict[str, torch.Tensor]
    probs: dict[str, list[list[float]]]
    history: list[dict[str, Any]]
    arch_steps: int
    architectures_sampled: int
    seconds: dict[str, float]
    surrogate: dict[str, Any] | None = None
    latency_trace: list[dict[str, float]] = field(default_factory=list)


def search_loaders(workload: Any, portion: float, batch_size: int, seed: int) -> tuple[DataLoader, DataLoader]:
    """Seeded split of the training split into the weight/arch stream and the held-out stream."""
    data = workload.split("train")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = min(max(1, int(math.floor(portion * len(data)))), len(data) - 1)

    def loader(indices: list[int], offset: int) -> DataLoader:
        gen = torch.Generator().manual_seed(seed + offset)
        return DataLoader(Subset(data, indices), batch_size, shuffle=True, generator=gen, collate_fn=workload.collate)

    return loader(order[:cut], 1), loader(order[cut:], 2)


def _groups(w: dict[str, torch.Tensor], n: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(group of each example, weights per example) for ``S`` samples over ``n`` examples; ``S`` in (1, n) is
    expanded to consecutive groups, ``S = 1`` (shared) and ``S = n`` (per example) pass through."""
    samples = next(iter(w.values())).shape[0]
    index = torch.arange(n) * samples // n
    if samples in (1, n):
        return index, w
    return index, {k: v[index.to(v.device)] for k, v in w.items()}


def _cycle(loader: DataLoader) -> Iterator[Any]:
    while True:
        yield from loader


class UnasSearch:
    """Alternating weight / architecture updates of one supernet (module docstring)."""

    def __init__(
        self, space: Any, supernet: nn.Module, settings: SearchSettings, recipe: Any, device: str,
        meter: LatencyMeter | None = None,
    ) -> None:  # fmt: skip
        self.space, self.net, self.s, self.recipe, self.device, self.meter = (
            space,
            supernet,
            settings,
            recipe,
            device,
            meter,
        )
        self.dist = ArchDistribution(space.groups(), settings.soften_eps, settings.temperature).to(device)
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.baseline, self.latency_baseline = (
            MovingAverage(settings.baseline_decay),
            MovingAverage(settings.baseline_decay),
        )
        self.surrogate: LinearSurrogate | None = None
        self.step = 0
        self.trace: list[dict[str, float]] = []

    @property
    def latency_on(self) -> bool:
        return self.s.target_latency_ms > 0 and self.meter is not None

    # ---- the objective ---------------------------------------------------------------------------------------------
    def objective(self, batch: Any, held_out: Any, w: dict[str, torch.Tensor]) -> torch.Tensor:
        """``f`` per sample ``[S]``: per example (``S = batch``), the minibatch mean (``S = 1``), or the mean over
        each of ``S`` consecutive groups of examples (one architecture per group)."""
        x, y = batch
        samples, n = next(iter(w.values())).shape[0], x.shape[0]
        index, wx = _groups(w, n)
        ce = F.cross_entropy(self.space.forward(self.net, x, wx), y, reduction="none")
        if self.s.objective == "gap":
            ce_val = F.cross_entropy(self.space.forward(self.net, held_out[0], wx), held_out[1], reduction="none")
            ce = ce + self.s.gap_lambda * (ce_val - ce).abs()
        if samples == n:
            f = ce
        elif samples == 1:
            f = ce.mean().unsqueeze(0)
        else:
            index = index.to(ce.device)
            f = ce.new_zeros(samples).index_add(0, index, ce) / torch.bincount(index, minlength=samples).to(ce)
        if self.s.alpha_loss_lambda:
            f = f + self.s.alpha_loss_lambda * self.space.alpha_penalty(w)
        return f

    def _count(self, n: int) -> int:
        """Architectures per minibatch: one per example, or ``arch_samples`` groups of examples (each process of the
        official multi-GPU runs draws its own architecture under ``--same_alpha_minibatch``)."""
        return min(self.s.arch_samples, n) if self.s.same_alpha_minibatch else n

    def _sample(self, n: int) -> ArchSample:
        return self.dist.sample(self._count(n), RELAXATION[self.s.estimator], self.generator)

    def _latency_term(self) -> torch.Tensor:
        assert self.meter is not None
        est, target = self.s.estimator, self.s.target_latency_ms
        sample = self.dist.sample(1, RELAXATION[est], self.generator)
        measured = self.meter(self.space.architecture(sample.discrete))
        c = latency_coefficient(self.step, self.s.latency_ramp_steps, self.s.latency_coeff)
        hinge_d = c * max(measured - target, 0.0)
        entry = {"step": float(self.step), "measured_ms": measured, "coeff": c}
        if self.surrogate is not None:
            with torch.no_grad():
                entry["surrogate_ms"] = float(self.surrogate(self.space.features(sample.discrete))[0])
        self.trace.append(entry)
        if est == "reinforce":
            b = self.latency_baseline.update(hinge_d)
            return (self.dist.log_prob(sample.discrete) * (hinge_d - b)).mean()
        assert self.surrogate is not None and sample.relaxed is not None
        hinge_z = c * torch.relu(self.surrogate(self.space.features(sample.relaxed)) - target)
        if est == "gumbel":
            return hinge_z.mean()
        return (self.dist.log_prob(sample.discrete) * (hinge_d - hinge_z).detach()).mean() + hinge_z.mean()

    # ---- updates ---------------------------------------------------------------------------------------------------
    def arch_step(self, batch: Any, held_out: Any, optimizer: torch.optim.Optimizer) -> tuple[ArchSample, Any, float]:
        """One architecture update; returns the sample (its relaxed weights train the supernet on the returned
        minibatch, cut to the held-out one's size when examples are paired) and ``mean f``."""
        n = batch[0].shape[0] if self.s.objective != "gap" else min(batch[0].shape[0], held_out[0].shape[0])
        batch, held_out = (batch[0][:n], batch[1][:n]), (held_out[0][:n], held_out[1][:n])
        sample, est = self._sample(n), self.s.estimator
        f_d = f_z = log_q = None
        if est != "gumbel":
            with torch.no_grad():
                f_d = self.objective(batch, held_out, sample.discrete)
            log_q = self.dist.log_prob(sample.discrete)
        if est != "reinforce":
            assert sample.relaxed is not None
            f_z = self.objective(batch, held_out, sample.relaxed)
        loss = surrogate_loss(est, log_q, f_d, f_z, self.baseline)
        if self.latency_on:
            loss = loss + self._latency_term()
        params = list(self.dist.parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        optimizer.zero_grad(set_to_none=True)
        for p, g in zip(params, grads, strict=True):
            p.grad = g
        optimizer.step()
        value = f_d if f_d is not None else f_z
        assert value is not None
        return sample, batch, float(value.detach().mean())

    def weight_step(self, batch: Any, w: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer) -> float:
        x, y = batch
        _, w = _groups({k: v.detach() for k, v in w.items()}, x.shape[0])
        loss = F.cross_entropy(self.space.forward(self.net, x, w), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"UNAS weight step: loss {float(loss)}; lower recipe.lr or arch_lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.recipe.grad_clip:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.recipe.grad_clip)
        optimizer.step()
        return float(loss.detach())

    # ---- phases ----------------------------------------------------------------------------------------------------
    def warmup(self, train: DataLoader) -> None:
        if self.s.warmup_epochs <= 0:
            return
        optimizer = make_optimizer(self.net, self.recipe)
        self.net.train()
        for epoch in range(self.s.warmup_epochs):
            losses = []
            bar = tqdm(train, desc=f"[unas] warm-up {epoch + 1}/{self.s.warmup_epochs}", leave=False,
                       disable=bar_disable())  # fmt: skip
            for x, y in bar:
                batch = (x.to(self.device), y.to(self.device))
                with torch.no_grad():
                    sample = self.dist.sample(self._count(x.shape[0]), "gumbel", self.generator)
                assert sample.relaxed is not None
                losses.append(self.weight_step(batch, sample.relaxed, optimizer))
            say(f"[unas] warm-up epoch {epoch + 1}/{self.s.warmup_epochs}: weight loss {sum(losses) / len(losses):.4f}")

    def fit_surrogate(self) -> dict[str, Any]:
        """Measure ``latency_samples`` architectures drawn from ``q`` and fit the linear surrogate."""
        assert self.meter is not None
        features, latencies = [], []
        bar = tqdm(range(self.s.latency_samples), desc="[unas] latency samples", leave=False, disable=bar_disable())
        for _ in bar:
            sample = self.dist.sample(1, "none", self.generator)
            latencies.append(self.meter(self.space.architecture(sample.discrete)))
            features.append(self.space.features(sample.discrete)[0].detach().cpu())
        self.surrogate, stats = fit_surrogate(features, latencies)
        self.surrogate.to(self.device)
        say(f"[unas] latency surrogate on {len(latencies)} measured architectures: held-out R^2 {stats['r2']:.3f}, "
            f"MAE {stats['mae_ms']:.3f} ms (mean latency {stats['latency_mean_ms']:.3f} ms)")  # fmt: skip
        return stats

    def run(self, train: DataLoader, held_out: DataLoader) -> SearchResult:
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        self.warmup(train)
        seconds["warmup"] = time.perf_counter() - start
        surrogate_stats = None
        if self.latency_on:
            start = time.perf_counter()
            surrogate_stats = self.fit_surrogate()
            seconds["surrogate"] = time.perf_counter() - start
        start = time.perf_counter()
        history, sampled = self._alternate(train, held_out)
        seconds["alternating"] = time.perf_counter() - start
        probs = {k: v.cpu().tolist() for k, v in self.dist.probs().items()}
        alphas = {k: v.detach().cpu().clone() for k, v in self.dist.raw().items()}
        return SearchResult(alphas, probs, history, self.step, sampled, seconds, surrogate_stats, self.trace)

    def _alternate(self, train: DataLoader, held_out: DataLoader) -> tuple[list[dict[str, Any]], int]:
        epochs = self.s.epochs
        arch_opt = torch.optim.Adam(self.dist.parameters(), lr=self.s.arch_lr, weight_decay=self.s.arch_weight_decay)
        arch_sched = torch.optim.lr_scheduler.CosineAnnealingLR(arch_opt, max(epochs, 1), eta_min=self.s.arch_lr_min)
        weight_opt = make_optimizer(self.net, self.recipe)
        lr_min = self.recipe.lr * WEIGHT_LR_MIN_RATIO
        weight_sched = torch.optim.lr_scheduler.CosineAnnealingLR(weight_opt, max(epochs, 1), eta_min=lr_min)
        stream, history, sampled = _cycle(held_out), [], 0
        self.net.train()
        for epoch in range(epochs):
            f_values, losses, t0 = [], [], time.perf_counter()
            bar = tqdm(train, desc=f"[unas] search {epoch + 1}/{epochs}", leave=False, disable=bar_disable())
            for x, y in bar:
                batch = (x.to(self.device), y.to(self.device))
                xv, yv = next(stream)
                sample, used, f_value = self.arch_step(batch, (xv.to(self.device), yv.to(self.device)), arch_opt)
                sampled += sample.count
                f_values.append(f_value)
                assert sample.relaxed is not None
                losses.append(self.weight_step(used, sample.relaxed, weight_opt))
                self.step += 1
                bar.set_postfix(f=f"{f_value:.3f}")
            arch_sched.step()
            weight_sched.step()
            history.append(self._epoch_record(epoch, f_values, losses, time.perf_counter() - t0))
        return history, sampled

    def _epoch_record(self, epoch: int, f_values: list[float], losses: list[float], seconds: float) -> dict[str, Any]:
        derived = self.space.derive(self.dist.raw())
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "objective_mean": sum(f_values) / max(len(f_values), 1),
            "weight_loss": sum(losses) / max(len(losses), 1),
            "entropy": float(self.dist.entropy().detach()),
            "seconds": seconds,
            "derived": self.space.describe(derived),
        }
        text = f"[unas] search epoch {epoch + 1}/{self.s.epochs}: f {record['objective_mean']:.4f}, " \
               f"weight loss {record['weight_loss']:.4f}, entropy {record['entropy']:.2f}"  # fmt: skip
        if self.latency_on:
            assert self.meter is not None
            record["derived_latency_ms"] = self.meter(derived)
            recent = [t["measured_ms"] for t in self.trace[-len(f_values) :]]
            record["sampled_latency_mean_ms"] = sum(recent) / max(len(recent), 1)
            text += f", derived latency {record['derived_latency_ms']:.3f} ms (target {self.s.target_latency_ms:.3f})"
        say(text + f" ({seconds:.0f}s)")
        return record


def random_search(
    space: Any, supernet: nn.Module, count: int, held_out: DataLoader, device: str, generator: torch.Generator,
    meter: LatencyMeter | None = None, target_ms: float = 0.0,
) -> dict[str, Any]:  # fmt: skip
    """Uniform random search with weight sharing (module docstring); returns the chosen architecture and the tally."""
    uniform = ArchDistribution(space.groups()).to(device)
    buffers = copy.deepcopy({k: v for k, v in supernet.state_dict().items() if "running" in k or "num_batches" in k})
    stream = _cycle(held_out)
    candidates: list[dict[str, Any]] = []
    supernet.train()
    bar = tqdm(range(count), desc="[unas] random search", leave=False, disable=bar_disable())
    with torch.no_grad():
        for _ in bar:
            sample = uniform.sample(1, "none", generator)
            arch = space.architecture(sample.discrete)
            x, y = next(stream)
            loss = F.cross_entropy(space.forward(supernet, x.to(device), sample.discrete), y.to(device))
            entry: dict[str, Any] = {"architecture": arch, "held_out_loss": float(loss)}
            if meter is not None and target_ms > 0:
                entry["latency_ms"] = meter(arch)
            candidates.append(entry)
    supernet.load_state_dict(buffers, strict=False)
    feasible = [c for c in candidates if "latency_ms" not in c or c["latency_ms"] <= target_ms]
    best = (
        min(feasible, key=lambda c: c["held_out_loss"]) if feasible else min(candidates, key=lambda c: c["latency_ms"])
    )
    return {
        "architecture": best["architecture"],
        "held_out_loss": best["held_out_loss"],
        "evaluated": count,
        "meeting_target": len(feasible) if target_ms > 0 else None,
        "chosen_by": "lowest held-out loss" + (" among those meeting the target" if feasible and target_ms > 0 else "")
        if feasible
        else "no sample met the target: the fastest one",
    }
