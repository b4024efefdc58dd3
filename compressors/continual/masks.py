"""Masks shared by PackNet and Piggyback: the masked conv/linear layer, bit packing, and the STE thresholders.

* :class:`MaskedLayer` wraps one ``nn.Conv2d`` / ``nn.Linear`` of the shared network (the official code masks exactly
  these: ``prune.py`` and ``modnets/layers.py``). It runs the layer with the weight its subclass gives for the active
  task. A weight materialised for a task lives in the non-persistent buffer ``served``: it is not stored (the state
  dict holds only what a deployment stores: the weights, the masks, the heads).
* :func:`pack_bits` / :func:`unpack_bits`: 8 mask bits per byte (Piggyback's 1 bit per weight and task);
  :func:`pack_codes` stores small integers (PackNet's owner index) as ``bits`` bit-planes.
* :class:`Binarizer` / :class:`Ternarizer`: Piggyback's thresholding with the straight-through gradient.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

MASKABLE = (nn.Conv2d, nn.Linear)  # official: isinstance(module, nn.Conv2d) or isinstance(module, nn.Linear)
_SHIFTS = torch.arange(8, dtype=torch.uint8)


def run_layer(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``layer`` applied to ``x`` with ``weight`` in place of its own (its bias, stride, padding, ... unchanged)."""
    if isinstance(layer, nn.Conv2d):
        return layer._conv_forward(x, weight, layer.bias)
    return F.linear(x, weight, layer.bias)


class MaskedLayer(nn.Module):
    """A conv/linear layer whose forward weight the subclass chooses per task (``layer.weight`` when nothing is
    materialised). ``layer`` keeps its own parameters, so training it trains the shared weight."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.register_buffer("served", None, persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        return self.layer.weight

    def forward_weight(self) -> torch.Tensor:
        return self.served if self.served is not None else self.layer.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_layer(self.layer, x, self.forward_weight())


def wrap_layers(shared: nn.Module, factory: Any) -> dict[str, MaskedLayer]:
    """Replace every conv/linear of ``shared`` by ``factory(layer)``; returns {name: wrapper} in module order."""
    found = [(n, m) for n, m in shared.named_modules() if isinstance(m, MASKABLE)]
    wrapped: dict[str, MaskedLayer] = {}
    for name, layer in found:
        parent_name, _, attr = name.rpartition(".")
        parent = shared.get_submodule(parent_name) if parent_name else shared
        wrapper = factory(layer)
        parent._modules[attr] = wrapper
        wrapped[name] = wrapper
    return wrapped


def masked_layers(shared: nn.Module) -> dict[str, MaskedLayer]:
    return {n: m for n, m in shared.named_modules() if isinstance(m, MaskedLayer)}


def unwrap(shared: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    """A plain copy of ``shared`` (each wrapper replaced by its layer) with the given weights: a task's own model."""
    plain = _copy_without_buffers(shared)
    for name, wrapper in list(masked_layers(plain).items()):
        parent_name, _, attr = name.rpartition(".")
        parent = plain.get_submodule(parent_name) if parent_name else plain
        layer = wrapper.layer
        with torch.no_grad():
            layer.weight.copy_(weights[name])
        parent._modules[attr] = layer
    return plain


def _copy_without_buffers(shared: nn.Module) -> nn.Module:
    """deepcopy, without duplicating the wrappers' served copies and masks (they are not part of the plain model)."""
    memo: dict[int, Any] = {}
    for wrapper in masked_layers(shared).values():
        for tensor in wrapper._buffers.values():
            if tensor is not None:
                memo[id(tensor)] = None
    return copy.deepcopy(shared, memo)


# ---- bit packing ----------------------------------------------------------------------------------------------------
def pack_bits(mask: torch.Tensor) -> torch.Tensor:
    """A boolean tensor as uint8 bytes, 8 values per byte (value ``i`` is bit ``i % 8`` of byte ``i // 8``)."""
    flat = mask.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % 8
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    groups = flat.view(-1, 8)
    packed = torch.zeros(groups.shape[0], dtype=torch.uint8, device=mask.device)
    for bit in range(8):
        packed |= groups[:, bit] << bit
    return packed


def unpack_bits(packed: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The boolean tensor of ``shape`` that :func:`pack_bits` packed (a 1-byte-per-value temporary, never float)."""
    numel = math.prod(shape)
    bits = (packed.unsqueeze(1) >> _SHIFTS.to(packed.device)) & 1
    return bits.view(-1)[:numel].view(shape).bool()


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Small non-negative integers (< 2**bits) as ``bits`` packed bit-planes: [bits, ceil(n / 8)] uint8."""
    if int(codes.max()) >= 2**bits:
        raise ValueError(f"codes up to {int(codes.max())} do not fit in {bits} bits")
    return torch.stack([pack_bits((codes >> plane) & 1 == 1) for plane in range(bits)])


def unpack_codes(planes: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    codes = torch.zeros(shape, dtype=torch.uint8, device=planes.device)
    for plane in range(planes.shape[0]):
        codes |= unpack_bits(planes[plane], shape).to(torch.uint8) << plane
    return codes


def packed_bytes(numel: int, bits: float = 1.0) -> int:
    return math.ceil(numel * bits / 8)


# ---- Piggyback's thresholding functions (modnets/layers.py) ---------------------------------------------------------
class Binarizer(torch.autograd.Function):
    """m = 1(m_r > τ) (``inputs.le(threshold) -> 0``, ``gt -> 1``); backward passes the gradient straight through."""

    @staticmethod
    def forward(ctx: Any, real: torch.Tensor, threshold: float) -> torch.Tensor:
        return (real > threshold).to(real.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class Ternarizer(torch.autograd.Function):
    """m = -1 where m_r < 0 (not < -τ, as the official code), +1 where m_r > τ, else 0; straight-through backward."""

    @staticmethod
    def forward(ctx: Any, real: torch.Tensor, threshold: float) -> torch.Tensor:
        out = torch.zeros_like(real)
        out[real < 0] = -1.0
        out[real > threshold] = 1.0
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None
