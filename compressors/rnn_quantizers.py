"""Weight quantizers of Ott et al., "Recurrent Neural Networks With Limited Numerical Precision" (arXiv 1608.06902).

Each function maps a real-valued weight tensor ``w`` to its low-precision value ``w_q`` (the forward value only);
:func:`grad_preserve` then makes ``w_q`` carry the gradient to ``w`` unchanged, which is the paper's
"rounding with the gradient preserved" (official code ``round_op.py`` ``GradPreserveRoundOp.grad`` returns the
incoming gradient; ``rounding_rnn.py`` ``compute_rnn_grads`` takes the loss gradient wrt the quantized weights and
applies it to the real weights).

Rules and where they come from (ottj/QuantizedRNN @a382981, ``regularization.py``):

* binarization (BinaryConnect): ``p = clip((w/H + 1)/2, 0, 1)``; deterministic ``w_q = +H if round(p) else -H``
  with round half away from zero, so ``w = 0`` maps to ``+H``; stochastic ``w_q = +H`` with probability ``p``
  (``binarize_weights``, L32-60). Unbiased inside ``[-H, H]``.
* ternarization (TernaryConnect): deterministic ``w_q = W0 * (1[w > -W0/2] + 1[w > W0/2] - 1)``, i.e. ``+W0`` above
  ``W0/2``, ``-W0`` at or below ``-W0/2``, ``0`` in between (a tie at ``+W0/2`` gives 0, at ``-W0/2`` gives ``-W0``);
  stochastic ``w_q = W0 * s(w) * Bernoulli(clip(|w|/W0, 0, 1))`` with ``s(w) = +1 if w > 0 else -1``
  (``ternarize_weights``, L63-90). Unbiased inside ``[-W0, W0]``.
* pow2-ternarization: the fixed-point "dual-copy rounding" of Stromatias et al. (2015),
  ``w_q = clip(round(w * 2^f), -(2^(f+i) - 1), 2^(f+i) - 1) / 2^f`` (``dual_copy_rounding``, L12-29), at the
  official defaults ``i = 0, f = 1``: ``w_q = clip(round(2w), -1, 1) / 2 in {-0.5, 0, +0.5}``, a ternary whose
  non-zero level is a power of two. :func:`pow2_ternarize` keeps the clip at +-1 for any ``f`` (level ``2^-f``,
  still ternary), which equals the official rule at ``f = 1``. The paper's text was not retrievable here; the
  identification rests on the repository offering exactly four modes (binary, ternary, dual-copy, quantize) for the
  paper's four methods (binarization, ternarization, pow2-ternarization, exponential quantization). Deterministic
  only, as in the code.
* exponential quantization: ``k = clip(floor(log2 |w|), -22, 9)``, ``p_up = |w| / 2^k - 1``; deterministic
  ``w_q = s(w) * 2^(k + 1[p_up > 0.5])``; stochastic ``w_q = s(w) * 2^(k + Bernoulli(p_up))`` with
  ``s(w) = +1 if w > 0 else -1`` (``quantize_weights``, L95-125; the bit limit [-22, 9] is hard-coded there).
  So ``w = 0`` maps to ``-2^-22``. Unbiased between neighbouring powers of two. ``p_up`` is clipped to [0, 1] here
  (the official code relies on the sampler for out-of-range ``p`` at the bit limits).

Test time (``rounding_rnn.py`` ``get_output_for``): Lasagne evaluates with ``deterministic=True``, so a network
trained with a stochastic quantizer is evaluated with the deterministic rule of the same family.
"""

from __future__ import annotations

import math
from typing import Any

import torch

EXP_BITLIMIT = (-22, 9)  # official hard-coded exponent range of exponential quantization
METHODS = ("binary", "ternary", "pow2_ternary", "exponential")


def round_half_away(x: torch.Tensor) -> torch.Tensor:
    """C ``round()``: ties go away from zero (``round_op.py``); ``torch.round`` rounds ties to even."""
    return torch.sign(x) * torch.floor(x.abs() + 0.5)


class _GradPreserve(torch.autograd.Function):
    """Forward: the quantized value exactly; backward: the incoming gradient unchanged."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, w_q: torch.Tensor) -> torch.Tensor:
        return w_q.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def grad_preserve(w_q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Forward value ``w_q`` (bit-exact), gradient passed to ``w`` unchanged (``GradPreserveRoundOp``).

    An autograd function rather than ``w + (w_q - w).detach()``, whose float rounding would move ``w_q`` off the
    quantization grid (e.g. ``0.3 + (2^-22 - 0.3) != 2^-22``).
    """
    return _GradPreserve.apply(w, w_q.detach())


def binarize(w: torch.Tensor, h: float, stochastic: bool) -> torch.Tensor:
    """BinaryConnect: values in ``{-h, +h}``; deterministic ``w = 0`` gives ``+h``."""
    p = ((w / h + 1.0) / 2.0).clamp(0.0, 1.0)
    keep = torch.bernoulli(p) if stochastic else round_half_away(p)
    return torch.where(keep > 0, torch.full_like(w, h), torch.full_like(w, -h))


def ternarize(w: torch.Tensor, w0: float, stochastic: bool) -> torch.Tensor:
    """TernaryConnect with level ``w0``: values in ``{-w0, 0, +w0}``."""
    if not stochastic:
        level = (w > -w0 / 2.0).to(w.dtype) + (w > w0 / 2.0).to(w.dtype) - 1.0
        return level * w0
    sign = torch.where(w > 0, 1.0, -1.0).to(w.dtype)
    return w0 * sign * torch.bernoulli((w / w0).abs().clamp(0.0, 1.0))


def pow2_ternarize(w: torch.Tensor, frac_bits: int = 1) -> torch.Tensor:
    """``clip(round(w * 2^f), -1, 1) / 2^f`` in ``{-2^-f, 0, +2^-f}``; ties round away from zero."""
    scale = 2.0**frac_bits
    return round_half_away(w * scale).clamp(-1.0, 1.0) / scale


def exp_quantize(w: torch.Tensor, stochastic: bool, bitlimit: tuple[int, int] = EXP_BITLIMIT) -> torch.Tensor:
    """Exponential (power-of-two) quantization: values ``±2^k`` with ``k`` in ``bitlimit``."""
    k = exp_index(w, bitlimit)
    p_up = ((w.abs() / torch.exp2(k)) - 1.0).clamp(0.0, 1.0)
    up = torch.bernoulli(p_up) if stochastic else (p_up > 0.5).to(w.dtype)
    sign = torch.where(w > 0, 1.0, -1.0).to(w.dtype)
    return sign * torch.exp2(k + up)


def exp_index(w: torch.Tensor, bitlimit: tuple[int, int] = EXP_BITLIMIT) -> torch.Tensor:
    """``clip(floor(log2 |w|), low, high)``; ``w = 0`` gives ``low``."""
    return torch.floor(torch.log2(w.abs())).clamp(float(bitlimit[0]), float(bitlimit[1]))


def quantize(w: torch.Tensor, method: str, stochastic: bool, level: float, frac_bits: int = 1) -> torch.Tensor:
    """Dispatch to one rule. ``level`` is ``H`` for binary and ``W0`` for ternary; unused otherwise."""
    if method == "binary":
        return binarize(w, level, stochastic)
    if method == "ternary":
        return ternarize(w, level, stochastic)
    if method == "pow2_ternary":
        return pow2_ternarize(w, frac_bits)
    if method == "exponential":
        return exp_quantize(w, stochastic)
    raise ValueError(f"Unknown quantization method {method!r}; use one of {list(METHODS)}")


def allowed_values(method: str, level: float, frac_bits: int = 1) -> torch.Tensor | None:
    """The finite value set of a fixed-level method (``None`` for exponential, whose set is ``±2^k``)."""
    if method == "binary":
        return torch.tensor([-level, level])
    if method == "ternary":
        return torch.tensor([-level, 0.0, level])
    if method == "pow2_ternary":
        step = 2.0**-frac_bits
        return torch.tensor([-step, 0.0, step])
    return None


def exponent_bits(w_q: torch.Tensor) -> int:
    """Bits of the exponent field for exponentially quantized ``w_q``: ``ceil(log2(#exponents in the used range))``.

    The range counted is ``[min k, max k]`` over the values present (not the full [-22, 9] limit).
    """
    k = torch.log2(w_q.abs()).round()
    span = int(k.max().item() - k.min().item()) + 1
    return max(1, math.ceil(math.log2(span))) if span > 1 else 0


def storage_bits(method: str, w_q: torch.Tensor) -> float:
    """Bits per element: 1 binary, 2 ternary / pow2-ternary, 1 sign + exponent bits for exponential."""
    if method == "binary":
        return 1.0
    if method in ("ternary", "pow2_ternary"):
        return 2.0
    if method == "exponential":
        return 1.0 + exponent_bits(w_q)
    raise ValueError(f"Unknown quantization method {method!r}; use one of {list(METHODS)}")


def glorot_limit(fan_in: int, fan_out: int) -> float:
    """``sqrt(6 / (fan_in + fan_out))`` (rounding_rnn.py L79-82: W0 for input weights and biases)."""
    return math.sqrt(6.0 / (fan_in + fan_out))
