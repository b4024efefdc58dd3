"""Cost accounting beyond dense FLOPs (METHODOLOGY §6-8).

- Effective FLOPs: per weighted leaf layer, dense FLOPs x weight density; a layer whose weights follow the 2:4
  pattern counts 0.5 whatever its density (the sparse tensor core always executes half). FLOPs outside weighted
  leaf layers (attention matmuls, pooling) count in full.
- BOPs: MACs x weight bits x activation bits for each quantized layer (the bit-operation count of the quantization
  literature, e.g. Baskin et al., UNIQ, arXiv 1804.10969). Bits come from ``CompressedModel.weight_bits``:
  ``"<module>.weight"`` entries for weights and, by convention, ``"activation:<module>"`` entries for activations
  (32 when absent).
- Theoretical bits per tensor: dense = elements x bits; quantized adds its scales/zero-points; CSR = rows x 8 +
  (8 + element bytes) x nonzeros bytes (int64 row pointers and column indices); N:M keeps N of every M values plus
  log2(M) index bits per kept value, which is 9/16 of dense for fp16 and 10/16 for int8 at 2:4; per-task binary
  masks (Piggyback) add 1 bit per masked parameter per task.
- Roofline: time >= max(FLOPs / peak FLOP/s, bytes / bandwidth) with bytes = stored weights + inputs + outputs;
  the ideal speedup is the ratio of the two bounds. "As executed" uses the dense FLOPs and the bytes of the tensors
  the model really holds, so a masked model run with dense kernels has ideal 1.0 and is never reported as faster.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

FLOAT_BITS = 32.0
INDEX_BYTES = 8  # int64 CSR row pointer / column index


# ---- weight structure ----------------------------------------------------------------------------------------------
def matrix_params(module: nn.Module) -> list[torch.Tensor]:
    """The module's own weight matrices/kernels (parameters with >= 2 dims, not those of its children)."""
    return [p for p in module.parameters(recurse=False) if p.dim() >= 2]


def weight_density(module: nn.Module) -> float:
    """Nonzeros / elements over the module's own weight matrices (1.0 when it has none)."""
    params = matrix_params(module)
    total = sum(p.numel() for p in params)
    if total == 0:
        return 1.0
    return sum(int(torch.count_nonzero(p.detach())) for p in params) / total


def satisfies_n_m(tensor: torch.Tensor, n: int = 2, m: int = 4) -> bool:
    """True if every group of ``m`` consecutive weights along the input (last, flattened) dimension has <= ``n``
    nonzeros: the layout of NVIDIA's semi-structured sparsity (``to_sparse_semi_structured`` groups along rows)."""
    if tensor.dim() < 2:
        return False
    rows = tensor.detach().reshape(tensor.shape[0], -1)
    if rows.shape[1] % m:
        return False
    groups = (rows.reshape(rows.shape[0], -1, m) != 0).sum(dim=-1)
    return bool((groups <= n).all())


def layer_pattern(module: nn.Module) -> tuple[str, float]:
    """(pattern, FLOP factor) of a weighted layer: ('dense', 1), ('2:4', 0.5) or ('unstructured', density)."""
    params = matrix_params(module)
    density = weight_density(module)
    if density >= 1.0:
        return "dense", 1.0
    if params and all(satisfies_n_m(p) for p in params):
        return "2:4", 0.5
    return "unstructured", density


# ---- FLOPs and BOPs ------------------------------------------------------------------------------------------------
def effective_flops(model: nn.Module, total_flops: int, leaf_flops: Mapping[str, int]) -> dict[str, Any]:
    """Effective FLOPs = sum over weighted leaf layers of dense FLOPs x factor, plus all other FLOPs in full (§7)."""
    modules = dict(model.named_modules())
    per_layer: dict[str, Any] = {}
    weighted_dense = weighted_effective = 0.0
    for name, flops in leaf_flops.items():
        module = modules.get(name)
        if module is None or not matrix_params(module):
            continue
        pattern, factor = layer_pattern(module)
        per_layer[name] = {"dense": int(flops), "pattern": pattern, "factor": factor, "effective": flops * factor}
        weighted_dense += flops
        weighted_effective += flops * factor
    effective = total_flops - weighted_dense + weighted_effective
    return {
        "effective_flops": effective,
        "dense_flops": int(total_flops),
        "ratio": effective / total_flops if total_flops else 1.0,
        "per_layer": per_layer,
    }


def bops(leaf_flops: Mapping[str, int], bits: Mapping[str, float]) -> dict[str, Any]:
    """BOPs = MACs x weight bits x activation bits of each quantized layer (weight bits < 32), MACs = FLOPs / 2.

    Returns the quantized layers' BOPs, their float reference (MACs x 32 x 32) and the ratio between them.
    """
    per_layer: dict[str, Any] = {}
    total = reference = 0.0
    for name, flops in leaf_flops.items():
        w_bits = bits.get(f"{name}.weight")
        if w_bits is None or w_bits >= FLOAT_BITS:
            continue
        a_bits = float(bits.get(f"activation:{name}", FLOAT_BITS))
        macs = flops / 2.0
        value = macs * float(w_bits) * a_bits
        per_layer[name] = {"macs": macs, "weight_bits": float(w_bits), "activation_bits": a_bits, "bops": value}
        total += value
        reference += macs * FLOAT_BITS * FLOAT_BITS
    return {
        "bops": total,
        "float_reference_bops": reference,
        "ratio": total / reference if reference else None,
        "quantized_layers": len(per_layer),
        "per_layer": per_layer,
    }


# ---- theoretical bits ----------------------------------------------------------------------------------------------
def dense_bits(elements: int, bits: float) -> float:
    return float(elements) * bits


def quantized_bits(
    elements: int,
    bits: float,
    scales: int = 1,
    scale_bits: float = 32.0,
    zero_points: int = 0,
    zero_point_bits: float = 32.0,
) -> float:
    """elements x bits + scales x scale bits + zero-points x zero-point bits."""
    return elements * bits + scales * scale_bits + zero_points * zero_point_bits


def csr_bytes(rows: int, nonzeros: int, element_bytes: float) -> float:
    """CSR storage in bytes: rows x 8 + (8 + element bytes) x nonzeros (METHODOLOGY §6)."""
    return rows * INDEX_BYTES + (INDEX_BYTES + element_bytes) * nonzeros


def n_m_bits(elements: int, bits: float, n: int = 2, m: int = 4) -> float:
    """N:M storage: N/M of the values plus log2(M) index bits per kept value (2:4 fp16 = 9/16, int8 = 10/16)."""
    kept = elements * n / m
    return kept * (bits + math.log2(m))


def task_mask_bits(masked_params: int, tasks: int) -> float:
    """Per-task binary masks (Piggyback): one bit per masked parameter per task."""
    return float(masked_params) * tasks


def tensor_bits(tensor: torch.Tensor, bits: float | None = None) -> dict[str, Any]:
    """Theoretical bits of one tensor in each representation that applies; ``best`` is the smallest."""
    bits = float(bits if bits is not None else tensor.element_size() * 8)
    elements = tensor.numel()
    options = {"dense": dense_bits(elements, bits)}
    if tensor.is_floating_point() and tensor.dim() >= 2:
        nonzeros = int(torch.count_nonzero(tensor))
        if nonzeros < elements:
            options["csr"] = 8 * csr_bytes(tensor.shape[0], nonzeros, bits / 8)
            if satisfies_n_m(tensor):
                options["2:4"] = n_m_bits(elements, bits)
    best = min(options, key=options.__getitem__)
    return {"elements": elements, "bits_per_element": bits, "options": options, "best": best, "bits": options[best]}


def theoretical_size(model: nn.Module, weight_bits: Mapping[str, float] | None = None) -> dict[str, Any]:
    """Total theoretical bits, dense and with each sparse tensor in its smallest format. Entries of ``weight_bits``
    named ``extra:<what>`` are bits added as they are (scales, masks, codebooks)."""
    weight_bits = weight_bits or {}
    dense = best = 0.0
    formats: dict[str, int] = {}
    for name, tensor in model.state_dict().items():
        if not torch.is_tensor(tensor):
            continue
        entry = tensor_bits(tensor, weight_bits.get(name))
        dense += entry["options"]["dense"]
        best += entry["bits"]
        formats[entry["best"]] = formats.get(entry["best"], 0) + 1
    extra = sum(v for k, v in weight_bits.items() if k.startswith("extra:"))
    return {
        "dense_bits": dense + extra,
        "sparse_aware_bits": best + extra,
        "extra_bits": extra,
        "tensors_by_format": formats,
    }


# ---- roofline ------------------------------------------------------------------------------------------------------
def tensor_bytes(values: Iterable[Any]) -> int:
    total = 0
    for value in values:
        if torch.is_tensor(value):
            total += value.numel() * value.element_size()
        elif isinstance(value, (list, tuple)):
            total += tensor_bytes(value)
        elif isinstance(value, dict):
            total += tensor_bytes(value.values())
        elif hasattr(value, "logits"):
            total += tensor_bytes([value.logits])
    return total


def stored_weight_bytes(model: nn.Module) -> int:
    """Bytes of the tensors the model holds as it runs (a pruned-but-dense weight still moves every byte)."""
    return tensor_bytes(model.state_dict().values())


def roofline_seconds(flops: float, bytes_moved: float, peak_flops_per_s: float, bandwidth_bytes_per_s: float) -> float:
    """Lower bound on the time of one pass: max(FLOPs / peak, bytes / bandwidth)."""
    return max(flops / peak_flops_per_s, bytes_moved / bandwidth_bytes_per_s)


def roofline(flops: float, bytes_moved: float, calibration: Mapping[str, Any]) -> dict[str, Any]:
    """Roofline bound of one pass with the measured peaks; says which roof binds."""
    peak, bandwidth = calibration["peak_flops_per_s"], calibration["bandwidth_bytes_per_s"]
    compute_s, memory_s = flops / peak, bytes_moved / bandwidth
    return {
        "flops": flops,
        "bytes": bytes_moved,
        "seconds": max(compute_s, memory_s),
        "bound": "compute" if compute_s >= memory_s else "memory",
        "arithmetic_intensity": flops / bytes_moved if bytes_moved else None,
        "peak_flops_per_s": peak,
        "bandwidth_bytes_per_s": bandwidth,
    }


def ideal_speedup(dense_seconds: float | None, compressed_seconds: float | None) -> float | None:
    if dense_seconds is None or not compressed_seconds:
        return None
    return dense_seconds / compressed_seconds


def efficiency(achieved: float | None, ideal: float | None) -> float | None:
    """Achieved / ideal speedup (1.0 = the compression realised all its ideal saving)."""
    if achieved is None or not ideal:
        return None
    return achieved / ideal
