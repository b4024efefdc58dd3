"""Shared quantizers: binarization, LinearQuant, LogQuant/AP2, straight-through estimators, gradient quantization.

Implements the quantization functions of QNN (Hubara, Courbariaux, Soudry, El-Yaniv, Bengio, JMLR'18,
arXiv 1609.07061), usable by any compressor:

- :func:`sign_pm1` — deterministic binarization, eq. (1): ``x^b = +1 if x >= 0 else -1``. **sign(0) = +1**, as in
  the authors' Theano code (``binary_tanh_unit``) and their XNOR kernel's packing (bit = ``a >= 0``); the later
  BinaryNet.pytorch code uses ``torch.sign`` and maps 0 to 0, which is not a binary value.
- :func:`hard_sigmoid` and :func:`stochastic_binarize` — eq. (2): ``+1`` with probability
  ``sigma(x) = clip((x + 1) / 2, 0, 1)``, else ``-1``; unbiased for ``x`` in [-1, 1]: ``E[x^b] = x``.
- :func:`binarize_ste` — sign (or stochastic sign) in the forward pass; the backward pass is the paper's
  straight-through estimator, eq. (4): ``g_r = g_q * 1(|r| <= 1)`` (the gradient of hardtanh; 1 at |r| = 1).
- :func:`linear_quant` — §4: ``LinearQuant(x, k) = clip(round(x / D) * D, minV, maxV)`` with step ``D = 2^(1-k)``
  on [-1, 1] and the k-bit two's-complement range ``minV = -1``, ``maxV = 1 - D`` (2^k levels). Rounding is
  **round half away from zero** (Theano's ``T.round`` default, used by the official code), not torch's
  half-to-even. ``stochastic=True`` rounds up with probability equal to the fractional part (unbiased).
- :func:`ap2` and :func:`log_quant` — §4: ``AP2(x) = sign(x) * 2^round(log2|x|)`` (power of two nearest in the
  log domain, ties away from zero in the exponent) and ``LogQuant(x, k) = clip(AP2(x), minV, maxV)`` with one sign
  bit and ``k - 1`` exponent bits: exponents ``e_max - 2^(k-1) + 1 .. e_max``. Zero stays zero (AP2(0) = 0).
- :func:`quantize_gradient` — k-bit gradient quantization (the paper trains with 6-bit gradients): LogQuant with
  the exponent range anchored at the tensor's largest magnitude.

Every quantizer is a small pure function of tensors; the ``*_ste`` variants wrap them in autograd functions.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "ap2",
    "binarize",
    "binarize_ste",
    "grad_quant",
    "hard_sigmoid",
    "linear_quant",
    "linear_quant_ste",
    "linear_step",
    "log_quant",
    "log_quant_ste",
    "quantize_gradient",
    "round_half_away",
    "sign_pm1",
    "stochastic_binarize",
]


def sign_pm1(x: torch.Tensor) -> torch.Tensor:
    """Deterministic binarization (QNN eq. 1): ``+1`` where ``x >= 0`` (so sign(0) = +1), ``-1`` elsewhere."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """QNN eq. (3): ``clip((x + 1) / 2, 0, 1)``."""
    return ((x + 1.0) / 2.0).clamp(0.0, 1.0)


def stochastic_binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarization (QNN eq. 2): ``+1`` with probability ``hard_sigmoid(x)``, else ``-1``.

    Drawn as ``+1 if U < hard_sigmoid(x)`` with ``U ~ U[0, 1)``; the expectation is ``clip(x, -1, 1)``.
    """
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.where(u < hard_sigmoid(x), torch.ones_like(x), -torch.ones_like(x))


def binarize(x: torch.Tensor, stochastic: bool = False) -> torch.Tensor:
    """Deterministic (eq. 1) or stochastic (eq. 2) binarization, without gradient handling."""
    return stochastic_binarize(x) if stochastic else sign_pm1(x)


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """Round to nearest, ties away from zero (``round(0.5) = 1``, ``round(-2.5) = -3``)."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


def linear_step(bits: int) -> float:
    """Step ``D = 2^(1-k)`` of the k-bit fixed-point grid on [-1, 1)."""
    if bits < 2:
        raise ValueError(f"LinearQuant needs bits >= 2 (got {bits}); use sign_pm1/binarize for 1 bit")
    return 2.0 ** (1 - bits)


def linear_quant(x: torch.Tensor, bits: int, stochastic: bool = False) -> torch.Tensor:
    """QNN §4 LinearQuant: ``clip(round(x / D) * D, -1, 1 - D)``, ``D = 2^(1-k)``: 2^k values.

    Args:
        x: values (nominally in [-1, 1]; others are clipped).
        bits: k >= 2.
        stochastic: round up with probability ``frac(x / D)`` (unbiased inside the range) instead of half away.
    """
    step = linear_step(bits)
    scaled = x / step
    if stochastic:
        rounded = torch.floor(scaled + torch.rand_like(scaled))
    else:
        rounded = round_half_away(scaled)
    return (rounded * step).clamp(-1.0, 1.0 - step)


def ap2(x: torch.Tensor) -> torch.Tensor:
    """QNN §4 / Alg. 3: approximate power of two ``sign(x) * 2^round(log2|x|)``; ``ap2(0) = 0``.

    The exponent is rounded half away from zero in the log domain (``ap2(2^1.5) = 4``).
    """
    magnitude = torch.exp2(round_half_away(torch.log2(x.abs().clamp_min(torch.finfo(x.dtype).tiny))))
    return torch.where(x == 0, torch.zeros_like(x), torch.sign(x) * magnitude)


def log_quant(x: torch.Tensor, bits: int, max_exponent: int = 0) -> torch.Tensor:
    """QNN §4 LogQuant: ``AP2(x)`` with its exponent clipped to ``[max_exponent - 2^(k-1) + 1, max_exponent]``.

    One sign bit and ``k - 1`` exponent bits; zero stays zero. For weights on [-1, 1], ``max_exponent = 0``
    (``maxV = 1``). Tiny non-zero values are clipped up to the smallest magnitude (clip, not flush to zero).
    """
    if bits < 2:
        raise ValueError(f"LogQuant needs bits >= 2 (one sign bit and >= 1 exponent bit), got {bits}")
    low = max_exponent - 2 ** (bits - 1) + 1
    exponent = round_half_away(torch.log2(x.abs().clamp_min(torch.finfo(x.dtype).tiny))).clamp(low, max_exponent)
    return torch.where(x == 0, torch.zeros_like(x), torch.sign(x) * torch.exp2(exponent))


def quantize_gradient(g: torch.Tensor, bits: int) -> torch.Tensor:
    """k-bit gradient quantization: LogQuant anchored at the tensor's largest magnitude.

    ``e_max = round(log2 max|g|)``; an all-zero tensor is returned unchanged.
    """
    peak = float(g.detach().abs().max()) if g.numel() else 0.0
    if peak == 0.0 or not math.isfinite(peak):
        return g
    max_exponent = int(round_half_away(torch.tensor(math.log2(peak))).item())
    return log_quant(g, bits, max_exponent)


class _BinarizeSTE(torch.autograd.Function):
    """Forward: sign (or stochastic sign). Backward: ``g * 1(|r| <= 1)`` (QNN eq. 4)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, stochastic: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        return binarize(x, stochastic)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * (x.abs() <= 1).to(grad.dtype), None


class _LinearQuantSTE(torch.autograd.Function):
    """Forward: LinearQuant. Backward: straight through inside [-1, 1], cancelled outside (as eq. 4)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, bits: int, stochastic: bool) -> torch.Tensor:
        ctx.save_for_backward(x)
        return linear_quant(x, bits, stochastic)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * (x.abs() <= 1).to(grad.dtype), None, None


class _LogQuantSTE(torch.autograd.Function):
    """Forward: LogQuant on [-1, 1] (``max_exponent = 0``). Backward: straight through, cancelled for |x| > 1."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, bits: int) -> torch.Tensor:
        ctx.save_for_backward(x)
        return log_quant(x, bits, 0)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors  # type: ignore[attr-defined]
        return grad * (x.abs() <= 1).to(grad.dtype), None


class _GradQuant(torch.autograd.Function):
    """Identity forward; quantizes the incoming gradient to ``bits`` with :func:`quantize_gradient`."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, bits: int) -> torch.Tensor:
        ctx.bits = bits  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return quantize_gradient(grad, ctx.bits), None  # type: ignore[attr-defined]


def binarize_ste(x: torch.Tensor, stochastic: bool = False) -> torch.Tensor:
    """Binarize with the QNN straight-through estimator (gradient passes where ``|x| <= 1``)."""
    return _BinarizeSTE.apply(x, stochastic)


def linear_quant_ste(x: torch.Tensor, bits: int, stochastic: bool = False) -> torch.Tensor:
    """LinearQuant with a straight-through gradient (cancelled where ``|x| > 1``)."""
    return _LinearQuantSTE.apply(x, bits, stochastic)


def log_quant_ste(x: torch.Tensor, bits: int) -> torch.Tensor:
    """LogQuant on [-1, 1] with a straight-through gradient (cancelled where ``|x| > 1``)."""
    return _LogQuantSTE.apply(x, bits)


def grad_quant(x: torch.Tensor, bits: int | None) -> torch.Tensor:
    """Identity whose backward pass quantizes the gradient to ``bits`` (no-op when ``bits`` is None or 0)."""
    return _GradQuant.apply(x, bits) if bits else x
