"""Analytic datapath energy of training a model in LNS, fixed point or floating point (LNS-Madam's
hardware section).

This is an **estimate**, not a measurement. Per-operation energies are Horowitz, "Computing's energy problem (and
what we can do about it)", ISSCC 2014, 45 nm, 0.9 V: integer add 8/16/32 bit = 0.03/0.05/0.1 pJ, integer multiply
8/32 bit = 0.2/3.1 pJ, float add 16/32 bit = 0.4/0.9 pJ, float multiply 16/32 bit = 1.1/3.7 pJ. Other bitwidths
are interpolated: adders linearly in the bitwidth, multipliers by the power law through the two published points
(an assumption of this suite). The LNS-Madam paper reports its energy from its own synthesised datapath; that
table could not be retrieved here, so the absolute figures differ from the paper's (its abstract: -90 % vs FP32,
-55 % vs FP8). The LNS datapath below models what the abstract names (LNS-to-integer conversion, partial-sum
accumulation); its details are this suite's model, not a transcription of the paper's design.

Per multiply-accumulate (MAC) of a GEMM:
- FP32: fp32 multiply + fp32 add.  FP-B (B < 16): FP-B multiply + fp32 accumulate.
- INT-B: B-bit integer multiply + ``accumulator_bits`` integer add.
- LNS-B: the product is an integer add of the two (B-1)-bit exponents (sign by XOR); its integer part shifts
  a one-hot value into one of ``gamma`` partial sums selected by the fractional part (a shift, counted as one
  ``accumulator_bits`` add) and the partial sum is accumulated (one ``accumulator_bits`` add). Per output, the
  ``gamma`` partial sums are multiplied by their constants ``2^(r/gamma)`` and added once (``gamma`` integer
  multiplies + adds at ``accumulator_bits``), amortised over the reduction length K of the layer.

Training MACs = 3 x forward MACs per sample x samples (forward, activation-gradient and weight-gradient GEMMs;
forward MACs from ``harness/meters/flops.py``). The backward GEMMs take one gradient operand, so their LNS exponent
adder is ``max(B_fwd, B_grad) - 1`` bits. Only the MACs of the quantized layers are priced in the run's format; the
rest (a transformer's two activation-by-activation attention matmuls, layers kept in fp32) are priced at FP32 in
every column, since the run computes them in fp32. Memory traffic, conversions at the layer boundaries and the
optimizer are not counted (the same simplification for every format).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from compressors.lns import NumberFormat
from harness.meters.flops import count_flops

ENERGY_SOURCE = "Horowitz, ISSCC 2014 (45 nm, 0.9 V), Fig. 1.1.9; other bitwidths interpolated"
INT_ADD_PJ = {8: 0.03, 16: 0.05, 32: 0.1}
INT_MUL_PJ = {8: 0.2, 32: 3.1}
FP_ADD_PJ = {16: 0.4, 32: 0.9}
FP_MUL_PJ = {16: 1.1, 32: 3.7}


def _power_law(table: dict[int, float], bits: int) -> float:
    (b0, e0), (b1, e1) = sorted(table.items())
    if bits in table:
        return table[bits]
    exponent = math.log(e1 / e0) / math.log(b1 / b0)
    return e0 * (bits / b0) ** exponent


def int_add(bits: int) -> float:
    """pJ of a ``bits``-wide integer add: Horowitz's points, linear in between and proportional outside."""
    points = sorted(INT_ADD_PJ.items())
    if bits <= points[0][0]:
        return points[0][1] * bits / points[0][0]
    if bits >= points[-1][0]:
        return points[-1][1] * bits / points[-1][0]
    for (b0, e0), (b1, e1) in zip(points, points[1:], strict=False):
        if b0 <= bits <= b1:
            return e0 + (e1 - e0) * (bits - b0) / (b1 - b0)
    raise AssertionError("unreachable")


def int_mul(bits: int) -> float:
    return _power_law(INT_MUL_PJ, bits)


def fp_add(bits: int) -> float:
    return _power_law(FP_ADD_PJ, bits)


def fp_mul(bits: int) -> float:
    return _power_law(FP_MUL_PJ, bits)


FP32_MAC_PJ = fp_mul(32) + fp_add(32)


def mac_energy(fmt: NumberFormat, operand_bits: int | None = None, accumulator_bits: int = 24) -> float:
    """pJ per MAC (without LNS's per-output term) for a format; ``operand_bits`` overrides ``fmt.bits``."""
    bits = operand_bits or fmt.bits
    if fmt.kind == "float":
        return fp_mul(bits) + fp_add(32)
    if fmt.kind == "fixed":
        return int_mul(bits) + int_add(accumulator_bits)
    return int_add(bits - 1) + 2 * int_add(accumulator_bits)


def lns_output_energy(fmt: NumberFormat, accumulator_bits: int = 24) -> float:
    """pJ per GEMM output for LNS: ``gamma`` constant multiplies and adds of the partial sums."""
    return fmt.gamma * (int_mul(accumulator_bits) + int_add(accumulator_bits))


def layer_macs(model: nn.Module, inputs: tuple[Any, ...]) -> tuple[int, dict[str, tuple[int, int]]]:
    """Forward MACs per sample (flops meter) and, per Conv/Linear-like layer, (MACs, reduction length K)."""
    counts = count_flops(model, inputs)
    batch = max(counts["batch_size"], 1)
    per_module = {name.partition(".")[2]: flops for name, flops in counts["per_module"].items() if "." in name}
    layers: dict[str, tuple[int, int]] = {}
    for name, module in model.named_modules():
        weight = _weight_shape(module)
        if weight is None or name not in per_module:
            continue
        k = int(math.prod(weight[1:]))
        layers[name] = (per_module[name] // 2 // batch, k)
    return counts["macs"] // batch, layers


def _weight_shape(module: nn.Module) -> tuple[int, ...] | None:
    shape = getattr(module, "weight_shape", None)
    if shape is not None:
        return tuple(shape)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
        return tuple(module.weight.shape)
    return None


def training_energy_joules(
    quantized: dict[str, tuple[int, int]],
    float_macs: int,
    fwd: NumberFormat,
    grad: NumberFormat,
    samples: int,
    accumulator_bits: int = 24,
) -> float:
    """Datapath energy (J) of ``samples`` training samples: forward GEMM + two backward GEMMs per MAC.

    ``quantized`` maps each quantized layer to (forward MACs per sample, reduction length K); ``float_macs`` are the
    forward MACs per sample computed in fp32.
    """
    bwd_bits = max(fwd.bits, grad.bits)
    quantized_macs = sum(macs for macs, _ in quantized.values())
    per_sample_pj = quantized_macs * (
        mac_energy(fwd, None, accumulator_bits) + 2 * mac_energy(fwd, bwd_bits, accumulator_bits)
    )
    if fwd.kind == "lns":
        outputs = sum(macs / max(k, 1) for macs, k in quantized.values())
        per_sample_pj += 3 * outputs * lns_output_energy(fwd, accumulator_bits)
    per_sample_pj += 3 * float_macs * FP32_MAC_PJ
    return per_sample_pj * samples * 1e-12


def estimate_training_energy(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    fwd: NumberFormat,
    grad: NumberFormat,
    samples: int,
    accumulator_bits: int = 24,
    quantized_layers: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The run's format against FP32, FP8 (E4M3) and INT8 training on the same MAC count (an ``estimated`` figure).

    ``quantized_layers``: names of the layers whose GEMMs run in the low-precision format (default: every
    Conv/Linear-like layer); all other MACs are priced at FP32 in every column.
    """
    fwd_macs, layers = layer_macs(model, inputs)
    names = set(layers) if quantized_layers is None else set(quantized_layers)
    quantized = {name: v for name, v in layers.items() if name in names}
    float_macs = fwd_macs - sum(macs for macs, _ in quantized.values())
    args = (quantized, float_macs)
    this = training_energy_joules(*args, fwd, grad, samples, accumulator_bits)
    fp32 = fwd_macs * 3 * FP32_MAC_PJ * samples * 1e-12
    fp8 = training_energy_joules(*args, NumberFormat("float", 8), NumberFormat("float", 8), samples, accumulator_bits)
    int8 = training_energy_joules(*args, NumberFormat("fixed", 8), NumberFormat("fixed", 8), samples, accumulator_bits)
    return {
        "kind": "estimated",
        "source": ENERGY_SOURCE,
        "scope": "GEMM datapath only (forward + 2 backward GEMMs per MAC); memory and conversions not counted",
        "forward_macs_per_sample": fwd_macs,
        "float_macs_per_sample": float_macs,
        "training_macs": 3 * fwd_macs * samples,
        "format": f"{fwd.describe()} forward, {grad.describe()} gradients; other MACs fp32",
        "joules": this,
        "fp32_joules": fp32,
        "fp8_joules": fp8,
        "int8_joules": int8,
        "reduction_vs_fp32": 1.0 - this / fp32 if fp32 else None,
        "reduction_vs_fp8": 1.0 - this / fp8 if fp8 else None,
        "pj_per_mac": {
            "this_forward": mac_energy(fwd, None, accumulator_bits),
            "fp32": FP32_MAC_PJ,
            "fp8": mac_energy(NumberFormat("float", 8)),
            "int8": mac_energy(NumberFormat("fixed", 8)),
        },
    }
