"""Model size: parameters, theoretical bits per tensor, bytes on disk (METHODOLOGY §6-7)."""

from __future__ import annotations

import io
from typing import Any

import torch
from torch import nn


def parameter_stats(model: nn.Module, weight_bits: dict[str, float] | None = None) -> dict[str, Any]:
    """Counts parameters and buffers, zeros (sparsity), and theoretical bits.

    Dense tensors count ``elements x bits of their dtype``; tensors listed in ``weight_bits`` count
    ``elements x weight_bits[name]`` (the compressor adds its scales/masks as separate entries).
    """
    weight_bits = weight_bits or {}
    params = zeros = 0
    bits = 0.0
    per_tensor = {}
    for name, tensor in model.state_dict().items():
        if not torch.is_tensor(tensor):
            continue
        n = tensor.numel()
        is_param = not name.endswith(("running_mean", "running_var", "num_batches_tracked"))
        tensor_bits = weight_bits.get(name, float(tensor.element_size() * 8))
        bits += n * tensor_bits
        if is_param:
            params += n
            zeros += int((tensor == 0).sum()) if tensor.is_floating_point() else 0
        per_tensor[name] = {"elements": n, "bits_per_element": tensor_bits}
    for name, extra in weight_bits.items():
        if name.startswith("extra:"):
            bits += extra
    return {
        "params": params,
        "zeros": zeros,
        "sparsity": zeros / params if params else 0.0,
        "theoretical_bits": bits,
        "theoretical_bytes": bits / 8.0,
        "per_tensor_bits": per_tensor,
    }


def state_dict_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``: what the artifact really weighs (pruned-but-dense stays dense)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()
