"""UNAS' non-differentiable latency objective (arXiv 1912.07651 §3.3; NVlabs/unas ``unas.py`` ``compute_latency``,
``train_surrogate``, ``surrogate.py``).

- **Measured latency** of a discrete architecture: the network that would be deployed (``proxyless_eval`` /
  ``darts_eval`` built from it) is prepared by the run's backend and timed by the harness's SingleStream meter
  (:func:`harness.meters.latency.measure_latency`): ``warmup`` calls, then ``repeats`` timed calls on batches of
  ``batch_size`` real validation images; the figure is the **median host latency** in ms (UNAS: median of 10 forward
  passes at batch 24, wall clock between synchronizes). Each architecture is measured once per search and cached
  by its key (the official code re-times repeated samples). These settings are below METHODOLOGY's minimums on
  purpose (thousands of architectures are timed); the result keeps the meter's ``below_methodology_minimums`` flag,
  and the final network is measured again by the harness at the run's measure profile. ``clock="thread"`` passes
  ``time.thread_time_ns`` (CPU time of the calling thread) to the meter instead of the wall clock: on a CPU shared
  with other jobs, time slices lost to them do not count (eager PyTorch with one intra-op thread computes in the
  calling thread); it is not the host latency of METHODOLOGY §1, and the summary says which clock was used.
- **Surrogate** ``l^(d) = w . vec(d) + b``: ridge regression (lambda = 1; like ``SurrogateLinear.learn`` the bias
  column is penalised too) on ``latency_samples`` architectures drawn from ``q`` at the start of the arch updates,
  80 % fit / 20 % held out; R^2 and mean absolute error on the held-out part are reported.
- **Hinge** ``c_t ReLU(latency - target)`` with ``c_t = coeff * min(step / ramp, 1)`` (``latency_coeff`` 0.1,
  ``latency_iter`` 30000 in the official code).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from harness.measure import batch_axes, make_backend
from harness.meters.latency import MeasureSettings, measure_latency

CLOCKS = ("wall", "thread")


def latency_coefficient(step: int, ramp_steps: int, coeff: float) -> float:
    """``c_t = coeff * min(step / ramp, 1)`` (``unas.py``: ``latency_coeff * min(global_step / latency_iter, 1)``)."""
    return coeff * max(min(step / max(ramp_steps, 1), 1.0), 0.0)


def latency_hinge(latency: torch.Tensor | float, target: float, coeff: float) -> torch.Tensor:
    """``c_t ReLU(latency - target)``: zero at or below the target, linear above it."""
    value = latency if isinstance(latency, torch.Tensor) else torch.tensor(float(latency))
    return coeff * torch.relu(value - target)


@dataclass
class LatencyMeter:
    """Measured latency of discrete architectures with the harness backend and meter (cached per key)."""

    build: Callable[[Any], nn.Module]
    key: Callable[[Any], str]
    workload: Any
    device: str
    backend: str = "eager"
    batch_size: int = 24
    repeats: int = 10
    warmup: int = 5
    clock: str = "wall"
    cache: dict[str, float] = field(default_factory=dict)
    measured: int = 0
    flags: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"latency clock {self.clock!r} is not one of {', '.join(CLOCKS)}")
        if self.clock == "thread" and (self.device != "cpu" or torch.get_num_threads() != 1):
            raise ValueError(
                "latency_clock=thread counts the calling thread's CPU time: it needs --device cpu and one intra-op "
                f"thread (OMP_NUM_THREADS=1; now {torch.get_num_threads()}); use latency_clock=wall otherwise"
            )
        count = max(1, math.ceil(64 / self.batch_size))  # >= 64 distinct real samples (METHODOLOGY §0)
        self.inputs = [self.workload.example_inputs(self.batch_size, self.device, offset=i) for i in range(count)]
        self.axes = batch_axes(self.workload)

    def settings(self, repeats: int | None = None) -> MeasureSettings:
        count = repeats or self.repeats
        return MeasureSettings(0.0, count, 0.0, self.warmup, (self.batch_size,))

    def time_model(self, model: nn.Module, repeats: int | None = None) -> dict[str, Any]:
        """The meter's full result for ``model`` (``host_latency`` stats in ms, flags)."""
        runnable = make_backend(self.backend, self.axes).prepare(model.eval(), self.inputs[0], self.device)
        clock = time.thread_time_ns if self.clock == "thread" else time.perf_counter_ns
        return measure_latency(runnable, self.inputs, self.settings(repeats), self.device, clock=clock)

    def __call__(self, architecture: Any) -> float:
        """Median latency (ms) of ``architecture``'s network; the first measurement of a key is reused."""
        key = self.key(architecture)
        if key not in self.cache:
            with torch.random.fork_rng(devices=[]):  # building initialises weights: keep the search's RNG stream
                model = self.build(architecture).to(self.device)
            result = self.time_model(model)
            self.flags.update(result["flags"])
            self.cache[key] = float(result["host_latency"]["p50"])
            self.measured += 1
        return self.cache[key]

    def describe(self) -> dict[str, Any]:
        return {
            "meter": "harness.meters.latency.measure_latency (SingleStream), median",
            "clock": "thread CPU time (time.thread_time_ns)" if self.clock == "thread" else "wall (host latency)",
            "backend": self.backend,
            "device": self.device,
            "batch_size": self.batch_size,
            "repeats": self.repeats,
            "warmup_calls": self.warmup,
            "architectures_measured": self.measured,
            "flags": sorted(self.flags),
        }


def ridge_fit(x: torch.Tensor, y: torch.Tensor, lam: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``[w; b] = (X1^T X1 + lam I)^-1 X1^T y`` with ``X1 = [X, 1]`` (``surrogate.py`` ``learn``)."""
    x1 = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], dim=1)
    gram = x1.T @ x1 + lam * torch.eye(x1.shape[1], dtype=torch.float64)
    solution = torch.linalg.solve(gram, x1.T @ y.double().view(-1, 1)).view(-1)
    return solution[:-1].float(), solution[-1].float()


def fit_quality(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """R^2 (``1 - SS_res / SS_tot``) and mean absolute error."""
    residual = float(((y - pred) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return {"r2": 1.0 - residual / total if total > 0 else float("nan"), "mae_ms": float((y - pred).abs().mean())}


class LinearSurrogate(nn.Module):
    """``l^(vec d) = w . vec d + b`` (fixed after fitting; UNAS ``SurrogateLinear``)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.get_buffer("weight").to(features) + self.get_buffer("bias").to(features)


def fit_surrogate(
    features: Sequence[torch.Tensor] | torch.Tensor, latencies: Sequence[float], holdout: float = 0.2, lam: float = 1.0
) -> tuple[LinearSurrogate, dict[str, Any]]:
    """Fit on the first ``1 - holdout`` of the samples and report R^2 / MAE on the rest (UNAS: 80/20)."""
    x = torch.stack(list(features)) if not isinstance(features, torch.Tensor) else features
    y = torch.tensor(list(latencies), dtype=torch.float32)
    n_train = int(round((1.0 - holdout) * len(y)))
    if n_train < 2 or len(y) - n_train < 2:
        raise ValueError(f"latency_samples={len(y)} is too few to fit and hold out (need >= 10 architectures)")
    w, b = ridge_fit(x[:n_train], y[:n_train], lam)
    surrogate = LinearSurrogate(w, b)
    with torch.no_grad():
        train_q, test_q = (
            fit_quality(surrogate(x[:n_train]), y[:n_train]),
            fit_quality(surrogate(x[n_train:]), y[n_train:]),
        )
    stats = {
        "r2": test_q["r2"],
        "mae_ms": test_q["mae_ms"],
        "train_r2": train_q["r2"],
        "train_mae_ms": train_q["mae_ms"],
        "n_train": n_train,
        "n_test": len(y) - n_train,
        "latency_mean_ms": float(y.mean()),
        "latency_std_ms": float(y.std()),
        "ridge_lambda": lam,
        "note": "R^2 and MAE on the held-out architectures",
    }
    return surrogate, stats
