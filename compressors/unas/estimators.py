"""Gradient estimators of ``grad_alpha E_{d ~ q_alpha}[f(d)]`` for a non-differentiable (discrete) ``f``
(UNAS, arXiv 1912.07651 §3; NVlabs/unas ``unas.py`` ``step``, meta losses ``rebar`` and ``reinforce``).

Each estimator is a *surrogate loss*: a scalar whose gradient in ``alpha`` is the estimate.

- ``unas`` (paper Eq. 3-4; ``meta_loss='rebar'``): REINFORCE with the relaxed sample as control variate plus the
  reparameterised Gumbel-softmax term,
  ``L = mean(log q(d) * sg[f(d) - f(z~)]) + mean f(z~)``, with ``z~`` carrying REBAR's conditional correction
  (:func:`compressors.unas.distributions.rebar_relaxed`): its gradient is
  ``(f(d) - f(z~|d)) grad log q(d) + grad f(z~) - grad f(z~|d)``, REBAR with ``eta = 1``: unbiased.
- ``reinforce`` (``meta_loss='reinforce'``): ``L = mean(log q(d) * sg[f(d) - b])`` with a moving-average baseline
  ``b``. The official ``ExpMovingAvgrageMeter(momentum=0.9)`` computes ``b <- 0.1 b + 0.9 mean f(d)`` and the reward
  uses the value from before the update; ``baseline_decay = 0.1`` (the weight of the old value) reproduces it.
- ``gumbel``: the pure relaxation ``L = mean f(z~)`` (plain Gumbel-softmax sample): low variance, biased.

``f`` values are per sample (``[S]``): per example when every example has its own architecture, else the minibatch
mean. :func:`per_sample_gradients` draws independent single-sample estimates of a toy problem for the unbiasedness
and variance checks (tests/compressors/test_unas.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from compressors.unas.distributions import gumbel_softmax, log_prob, rebar_relaxed, uniform_noise

ESTIMATORS = ("unas", "reinforce", "gumbel")
RELAXATION = {"unas": "rebar", "reinforce": "gumbel", "gumbel": "gumbel"}  # reinforce: relaxed z~ only for weights


@dataclass
class MovingAverage:
    """UNAS' ``ExpMovingAvgrageMeter``: ``avg <- decay * avg + (1 - decay) * value``, starting at 0."""

    decay: float = 0.1
    avg: float = 0.0

    def update(self, value: float) -> float:
        """Returns the baseline to use now (the value before the update), then updates."""
        before = self.avg
        self.avg = self.decay * self.avg + (1.0 - self.decay) * value
        return before


def surrogate_loss(
    estimator: str,
    log_q: torch.Tensor | None,
    f_discrete: torch.Tensor | None,
    f_relaxed: torch.Tensor | None,
    baseline: MovingAverage | None = None,
) -> torch.Tensor:
    """The estimator's surrogate loss from per-sample ``log q(d)``, ``f(d)`` (no grad) and ``f(z~)`` (with grad)."""
    if estimator == "unas":
        assert log_q is not None and f_discrete is not None and f_relaxed is not None
        return (log_q * (f_discrete - f_relaxed).detach()).mean() + f_relaxed.mean()
    if estimator == "reinforce":
        assert log_q is not None and f_discrete is not None and baseline is not None
        b = baseline.update(float(f_discrete.detach().mean()))
        return (log_q * (f_discrete.detach() - b)).mean() + b
    if estimator == "gumbel":
        assert f_relaxed is not None
        return f_relaxed.mean()
    raise ValueError(f"estimator={estimator!r} is not one of {', '.join(ESTIMATORS)}")


def per_sample_gradients(
    logits: torch.Tensor,
    f: Callable[[torch.Tensor], torch.Tensor],
    estimator: str,
    samples: int,
    temperature: float,
    generator: torch.Generator,
    baseline_decay: float = 0.1,
) -> torch.Tensor:
    """``samples`` independent single-sample estimates ``[samples, *logits.shape]`` of ``grad E_q[f(d)]``.

    ``logits`` ``[rows, K]``; ``f`` maps ``[S, rows, K]`` (one-hot or relaxed) to ``[S]``. Every sample gets its own
    copy of the logits, so one backward pass yields all per-sample gradients. REINFORCE's baseline runs over the
    samples in order, as it runs over minibatches in a search.
    """
    theta = logits.detach().unsqueeze(0).repeat(samples, *([1] * logits.dim())).requires_grad_(True)
    u = uniform_noise(theta.shape, generator)
    if estimator == "unas":
        relaxed, d = rebar_relaxed(theta, u, temperature)
    else:
        relaxed, d = gumbel_softmax(theta, u, temperature)
    lq = log_prob(theta, d)
    if estimator == "reinforce":
        with torch.no_grad():
            values = f(d)
        avg = MovingAverage(baseline_decay)
        baselines = torch.tensor([avg.update(float(v)) for v in values], dtype=values.dtype)
        loss = (lq * (values - baselines)).sum()
    elif estimator == "unas":
        with torch.no_grad():
            f_d = f(d)
        f_z = f(relaxed)
        loss = (lq * (f_d - f_z).detach() + f_z).sum()
    elif estimator == "gumbel":
        loss = f(relaxed).sum()
    else:
        raise ValueError(f"estimator={estimator!r} is not one of {', '.join(ESTIMATORS)}")
    (grad,) = torch.autograd.grad(loss, theta)
    return grad
