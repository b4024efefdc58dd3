"""Number formats for low-precision training: multi-base LNS (LNS-Madam, arXiv 2106.13914) and the
fixed-point / floating-point formats it is compared with.

Sources: the LNS-Madam abstract and the public optimizer code (jiaweizzhao/lns-madam-optimizer) were checked; the
paper's body (its exact quantizer, scale granularity, rounding) could not be retrieved with the tools available
here, so the format below follows the paper's description as summarised in PAPERS.md §7 and is marked as such.

Every format stores a tensor as **signed integer codes** ``q`` plus a float ``scale`` (per tensor or per output
channel). ``|q|`` indexes an ascending table of magnitudes with ``level(0) = 0`` and ``level(N) = 1``, ``N =
2^(B-1) - 1``, so a B-bit code is one sign bit and a (B-1)-bit magnitude code, and the value is
``sign(q) * scale * level(|q|)``.

Multi-base LNS (the paper's number system): ``x = sign * 2^(x~ / gamma)`` with integer exponent ``x~`` and base
factor ``gamma`` (base ``2^(1/gamma)``). Here, relative to the scale, the code ``k = |q|`` in ``1..N`` means
``|x| = scale * 2^(-(N - k) / gamma)``, so ``gamma * log2(|x| / scale)`` is the integer ``k - N`` (the grid
invariant tested in ``tests/compressors/test_lns.py``) and the largest code is the scale itself. One code (``k = 0``)
is spent on an exact zero, which the paper's sign + exponent layout does not describe (a documented difference);
Madam never produces it because a multiplicative update keeps a weight's sign and keeps it away from zero.

Rounding: ``nearest`` rounds the exponent ``gamma * log2|x|`` to the nearest integer (log-domain rounding, as in the
paper's quantizer ``round(gamma * log2 |x|)``); below the smallest level the value goes to zero when it is under
half of that level. ``stochastic`` rounds up with probability proportional to the *linear* distance to the two
neighbouring levels, so the quantized value is unbiased: ``E[Q(x)] = x`` inside the range (a choice of this suite;
the paper's public code rounds the normalised gradient to nearest). Values above the scale are clipped.

Fixed-point (INT-B, symmetric): ``level(k) = k / N``. Floating-point (1 sign, E exponent, M mantissa bits with
subnormals, no inf/NaN codes, like FP8 E4M3FN): every positive value of the format, normalised by the largest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

FORMATS = ("lns", "fixed", "float")
ROUNDINGS = ("nearest", "stochastic")
ON_GRID_RTOL = 1e-6  # fp32 decode error is ~6e-8 relative; the bias this snapping adds is below 1e-6 relative
# exponent bits of the floating-point baseline at each total bitwidth (8 -> E4M3 as in FP8 training; 16 -> FP16)
FLOAT_EXPONENT_BITS = {3: 1, 4: 2, 5: 2, 6: 3, 7: 3, 8: 4, 9: 4, 10: 5, 11: 5, 12: 5, 16: 5}


@dataclass(frozen=True)
class NumberFormat:
    """A B-bit number format: sign + (B-1)-bit magnitude code, values relative to a per-tensor/channel scale.

    Attributes:
        kind: 'lns', 'fixed' or 'float'.
        bits: total bits B (sign included), 2..16.
        gamma: LNS base factor (base 2^(1/gamma)); ignored by the other kinds.
    """

    kind: str = "lns"
    bits: int = 8
    gamma: float = 8.0

    def __post_init__(self) -> None:
        if self.kind not in FORMATS:
            raise ValueError(f"Unknown number format {self.kind!r}; use one of {FORMATS}")
        if not 2 <= self.bits <= 16:
            raise ValueError(f"bits must be in 2..16 (codes are int16), got {self.bits}")
        if self.kind == "lns" and self.gamma <= 0:
            raise ValueError(f"LNS base factor gamma must be positive, got {self.gamma}")

    @property
    def max_code(self) -> int:
        """N = 2^(B-1) - 1: the largest magnitude code."""
        return 2 ** (self.bits - 1) - 1

    @cached_property
    def levels(self) -> torch.Tensor:
        """Ascending magnitudes level(0..N) relative to the scale (level(0) = 0, level(N) = 1), float64."""
        n = self.max_code
        k = torch.arange(n + 1, dtype=torch.float64)
        if self.kind == "lns":
            lv = torch.exp2((k - n) / self.gamma)
            lv[0] = 0.0
            return lv
        if self.kind == "fixed":
            return k / n
        return _float_levels(self.bits)

    def describe(self) -> str:
        if self.kind == "lns":
            return f"LNS{self.bits} (gamma={self.gamma:g}, base 2^(1/{self.gamma:g}))"
        if self.kind == "float":
            e = FLOAT_EXPONENT_BITS.get(self.bits, max(1, (self.bits - 1) // 2))
            return f"FP{self.bits} (E{e}M{self.bits - 1 - e})"
        return f"INT{self.bits} (symmetric fixed point)"


def _float_levels(bits: int) -> torch.Tensor:
    """All non-negative values of a 1/E/M float format with subnormals, normalised so the largest is 1."""
    e_bits = FLOAT_EXPONENT_BITS.get(bits, max(1, (bits - 1) // 2))
    m_bits = bits - 1 - e_bits
    values = []
    for e_field in range(2**e_bits):
        for m in range(2**m_bits):
            frac = m / 2**m_bits
            values.append(frac * 2.0 if e_field == 0 else (1 + frac) * 2.0**e_field)  # bias 0: normalised below
    lv = torch.tensor(sorted(values), dtype=torch.float64)
    return lv / lv[-1]


def compute_scale(x: torch.Tensor, per_channel: bool, statistic: str = "max", factor: float = 1.0) -> torch.Tensor:
    """Scale per tensor (shape ``()``) or per output channel (dim 0, broadcastable shape).

    ``statistic`` is 'max' (max |x|) or 'rms' (root mean square, Madam's clamp ``p_scale * RMS(w0)``).
    Zero scales are replaced by 1 so that an all-zero tensor encodes to zeros.
    """
    flat = x.detach().reshape(x.shape[0], -1) if per_channel and x.dim() > 1 else x.detach().reshape(1, -1)
    flat = flat.float()
    stat = flat.abs().amax(dim=1) if statistic == "max" else flat.pow(2).mean(dim=1).sqrt()
    stat = stat * factor
    stat = torch.where(stat > 0, stat, torch.ones_like(stat))
    if per_channel and x.dim() > 1:
        return stat.reshape(-1, *([1] * (x.dim() - 1)))
    return stat.reshape(())


def encode(
    x: torch.Tensor,
    fmt: NumberFormat,
    scale: torch.Tensor,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Quantize ``x`` to signed int16 codes of ``fmt`` relative to ``scale`` (see the module docstring)."""
    if rounding not in ROUNDINGS:
        raise ValueError(f"Unknown rounding {rounding!r}; use one of {ROUNDINGS}")
    a = (x.detach().float().abs() / scale).clamp(max=1.0)
    if fmt.kind == "lns":
        k = _encode_lns(a, fmt, rounding, generator)
    else:
        k = _encode_table(a, fmt, rounding, generator)
    return (torch.sign(x.detach()).to(torch.int16) * k.to(torch.int16)).to(torch.int16)


def _encode_lns(a: torch.Tensor, fmt: NumberFormat, rounding: str, generator: torch.Generator | None) -> torch.Tensor:
    """Multi-base LNS: exponent = gamma * log2(|x|/s); nearest rounds it, stochastic rounds the value between levels."""
    n, gamma = fmt.max_code, fmt.gamma
    t = gamma * torch.log2(a.clamp_min(1e-38))  # <= 0; the exponent relative to the scale
    smallest = 2.0 ** ((1 - n) / gamma)
    if rounding == "nearest":
        k = (n + torch.round(t)).clamp(1, n)
        return torch.where(a < smallest / 2, torch.zeros_like(k), k)
    lo_exp = torch.floor(t)
    k_lo = n + lo_exp  # may be < 1: then the lower neighbour is zero
    lo = torch.where(k_lo >= 1, torch.exp2(lo_exp / gamma), torch.zeros_like(a))
    hi = torch.where(k_lo >= 1, torch.exp2((lo_exp + 1) / gamma), torch.full_like(a, smallest))
    k_lo = k_lo.clamp(min=0)
    p_up = _snap(((a - lo) / (hi - lo)).clamp(0, 1), a, lo, hi)
    up = torch.rand(a.shape, generator=generator, device=a.device) < p_up
    k = torch.where(up, torch.where(k_lo >= 1, k_lo + 1, torch.ones_like(k_lo)), k_lo)
    return k.clamp(0, n)


def _encode_table(a: torch.Tensor, fmt: NumberFormat, rounding: str, generator: torch.Generator | None) -> torch.Tensor:
    """Nearest / stochastic rounding to an ascending level table (fixed- and floating-point baselines)."""
    levels = fmt.levels.to(device=a.device, dtype=torch.float32)
    hi_idx = torch.searchsorted(levels, a.contiguous()).clamp(1, fmt.max_code)
    lo, hi = levels[hi_idx - 1], levels[hi_idx]
    if rounding == "nearest":
        up = (a - lo) >= (hi - a)
    else:
        p_up = _snap(((a - lo) / (hi - lo)).clamp(0, 1), a, lo, hi)
        up = torch.rand(a.shape, generator=generator, device=a.device) < p_up
    return torch.where(up, hi_idx, hi_idx - 1)


def _snap(p_up: torch.Tensor, a: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Values within ``ON_GRID_RTOL`` of a level count as on it, so re-encoding decoded fp32 values never moves."""
    p_up = torch.where((a - lo).abs() <= ON_GRID_RTOL * a, torch.zeros_like(p_up), p_up)
    return torch.where((hi - a).abs() <= ON_GRID_RTOL * a, torch.ones_like(p_up), p_up)


def decode(q: torch.Tensor, fmt: NumberFormat, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Values of signed codes ``q``: ``sign(q) * scale * level(|q|)``."""
    k = q.abs().to(torch.int64)
    if fmt.kind == "lns":
        mag = torch.exp2((k - fmt.max_code).to(dtype) / fmt.gamma) * (k > 0)
    else:
        mag = fmt.levels.to(device=q.device, dtype=dtype)[k]
    return torch.sign(q).to(dtype) * mag * scale.to(dtype)


def fake_quantize(
    x: torch.Tensor,
    fmt: NumberFormat,
    per_channel: bool = False,
    rounding: str = "nearest",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Quantize-dequantize with a max-abs scale (activations and gradients: a fresh scale per tensor/batch)."""
    scale = compute_scale(x, per_channel)
    return decode(encode(x, fmt, scale, rounding, generator), fmt, scale, x.dtype)


def lns_exponent(values: torch.Tensor, scale: torch.Tensor, gamma: float) -> torch.Tensor:
    """``gamma * log2(|w| / scale)`` for non-zero values: integers exactly when ``values`` lie on the LNS grid."""
    return gamma * torch.log2(values.abs().double() / scale.double())


def relative_error_bound(fmt: NumberFormat) -> float:
    """Worst-case relative error of nearest rounding inside the LNS range: 2^(1/(2 gamma)) - 1."""
    if fmt.kind != "lns":
        raise ValueError("relative_error_bound is defined for LNS formats")
    return math.pow(2.0, 1.0 / (2.0 * fmt.gamma)) - 1.0
