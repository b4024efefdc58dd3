"""Binary masks on parameters: magnitude masks, sparsity accounting, and a Trainer callback that keeps masks applied.

Shared by the pruning compressors. A :class:`MaskSet` maps parameter names to {0, 1} tensors of the parameter's
shape. :class:`MaskCallback` applies it to the gradients after ``backward`` (so masked weights get no update from
the loss) and to the weights after ``optimizer.step`` (so weight decay and momentum cannot revive them): the
"W <- W ⊙ Mask" step of DSD's sparse phase (arXiv 1607.04381, Algorithm 1), and the "keep pruned channels at zero"
step of Taylor pruning's fine-tuning (arXiv 1906.10771, ``enforce_pruning`` in the official engine).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import TYPE_CHECKING

import torch
from torch import nn

from harness.train import Callback

if TYPE_CHECKING:
    from harness.train import Trainer

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.RNNBase)


def prunable_weights(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Weights that weight pruning acts on: conv, linear and recurrent weight matrices; never biases or norms.

    Yields ``(parameter name, parameter)`` in module order.
    """
    for module_name, module in model.named_modules():
        if not isinstance(module, PRUNABLE_TYPES):
            continue
        for param_name, param in module.named_parameters(recurse=False):
            if param_name.startswith("weight") and param.dim() >= 2:
                yield (f"{module_name}.{param_name}" if module_name else param_name), param


def magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Mask removing exactly ``floor(sparsity * N)`` entries of smallest ``|w|`` (DSD Algorithm 1, per layer).

    The paper writes ``λ = sort(|W|)[k]``, ``Mask = 1(|W| > λ)``; on tie-free weights this removes the ``k``
    smallest magnitudes when the index is the k-th order statistic. Here ties are broken by position (a stable sort),
    so the count of removed weights is exactly ``k`` even when magnitudes repeat (e.g. weights already at zero).

    Args:
        weight: the tensor to mask.
        sparsity: fraction of entries to remove, in [0, 1).

    Returns:
        A {0, 1} tensor of ``weight``'s shape and dtype.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    flat = weight.detach().abs().flatten()
    k = removed_count(sparsity, flat.numel())
    mask = torch.ones_like(flat)
    if k > 0:
        order = torch.argsort(flat, stable=True)
        mask[order[:k]] = 0.0
    return mask.view_as(weight).to(weight.dtype)


def removed_count(sparsity: float, n: int) -> int:
    """``floor(sparsity * n)`` in exact decimal arithmetic: the float product misses by one for some pairs
    (0.7 * 90 = 62.99999999999999, 0.29 * 100 = 28.999999999999996); the sparsity is read as the decimal it
    prints as."""
    return math.floor(Fraction(repr(float(sparsity))) * n)


class MaskSet:
    """Named {0, 1} masks over a model's parameters.

    Args:
        masks: parameter name -> mask of that parameter's shape.
    """

    def __init__(self, masks: dict[str, torch.Tensor]) -> None:
        self.masks = masks

    @classmethod
    def magnitude(cls, model: nn.Module, sparsity: float) -> MaskSet:
        """Uniform per-layer magnitude masks on :func:`prunable_weights` (DSD's S step)."""
        return cls({name: magnitude_mask(p, sparsity) for name, p in prunable_weights(model)})

    def _params(self, model: nn.Module) -> Iterable[tuple[nn.Parameter, torch.Tensor]]:
        params = dict(model.named_parameters())
        for name, mask in self.masks.items():
            if name not in params:
                raise KeyError(f"Mask for {name!r} has no matching parameter in the model")
            param = params[name]
            if mask.device != param.device:
                mask = self.masks[name] = mask.to(param.device)
            yield param, mask

    @torch.no_grad()
    def apply_to_weights(self, model: nn.Module) -> None:
        """W <- W ⊙ Mask."""
        for param, mask in self._params(model):
            param.mul_(mask)

    @torch.no_grad()
    def apply_to_grads(self, model: nn.Module) -> None:
        """∇W <- ∇W ⊙ Mask (masked weights receive no gradient step)."""
        for param, mask in self._params(model):
            if param.grad is not None:
                param.grad.mul_(mask)

    def density(self) -> float:
        """Fraction of masked entries that are kept."""
        total = sum(m.numel() for m in self.masks.values())
        kept = sum(float(m.sum()) for m in self.masks.values())
        return kept / max(total, 1)


class MaskCallback(Callback):
    """Keeps a :class:`MaskSet` applied during training: on gradients after backward, on weights after each step."""

    def __init__(self, masks: MaskSet) -> None:
        self.masks = masks

    def on_train_start(self, trainer: Trainer, model: nn.Module) -> None:
        self.masks.apply_to_weights(model)

    def after_backward(self, trainer: Trainer, model: nn.Module) -> None:
        self.masks.apply_to_grads(model)

    def after_step(self, trainer: Trainer, model: nn.Module) -> None:
        self.masks.apply_to_weights(model)


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    """Fraction of exact zeros in each prunable weight (METHODOLOGY §7: unstructured, conv/linear/rnn weights)."""
    return {name: float((p == 0).sum()) / p.numel() for name, p in prunable_weights(model)}


def global_sparsity(model: nn.Module) -> float:
    """Zeros / elements over all prunable weights together."""
    zeros = total = 0
    for _, p in prunable_weights(model):
        zeros += int((p == 0).sum())
        total += p.numel()
    return zeros / max(total, 1)
