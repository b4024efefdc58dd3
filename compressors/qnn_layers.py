"""QNN layers (Hubara et al., arXiv 1609.07061): quantized Linear/Conv2d for training, packed binary layers for
inference, and shift-based batch normalisation.

Training layers (:class:`QuantLinear`, :class:`QuantConv2d`) keep real-valued weights and quantize them in every
forward pass (§2-4): ``w_bits = 1`` -> sign (eq. 1) or stochastic sign (eq. 2), ``w_bits >= 2`` -> LinearQuant or
LogQuant (§4), ``w_bits >= 32`` -> unchanged. Their *input* is quantized the same way with ``a_bits`` (the paper
binarises the output of the previous hardtanh; quantising at the consumer is equivalent and keeps the model's
activation modules untouched), except in the first layer, whose input is real data: it is rounded to 8-bit
fixed point (§2.5, ``s = sum_n 2^(n-1) (x^n . w^b)``). Gradients use the straight-through estimator with the
``|r| <= 1`` cancel (eq. 4). Optional k-bit quantization of the error flowing back into each layer's output.

Fixed-point input (a documented difference): the paper's input is unsigned 8-bit pixels; the suite's inputs are
normalised (mean/std), so they are rounded to signed two's-complement 8-bit fixed point with step
``2^-input_frac_bits`` (default 2^-5: range [-4, 3.97]). Bit planes then carry weights ``2^n`` for n < 7 and
``-2^7`` for the sign bit.

Bias: the float output ``x_q . w_q`` is computed without the bias and the bias is added afterwards (not fused into
addmm), so that the integer-valued product is exact and the packed kernel reproduces it bit for bit.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compressors.kernels import binary_ops
from compressors.quant import ap2, binarize_ste, grad_quant, linear_quant_ste, log_quant_ste, round_half_away

FULL_PRECISION = 32


def quantize_weight(w: torch.Tensor, bits: int, stochastic: bool, weight_quant: str) -> torch.Tensor:
    """Forward quantization of a real weight tensor (STE backward)."""
    if bits >= FULL_PRECISION:
        return w
    if bits == 1:
        return binarize_ste(w, stochastic)
    if weight_quant == "log":
        return log_quant_ste(w, bits)
    return linear_quant_ste(w, bits, stochastic)


def quantize_activation(x: torch.Tensor, bits: int, stochastic: bool) -> torch.Tensor:
    """Forward quantization of a layer input (STE backward, cancelled where ``|x| > 1``)."""
    if bits >= FULL_PRECISION:
        return x
    if bits == 1:
        return binarize_ste(x, stochastic)
    return linear_quant_ste(x, bits, stochastic)


class _FixedPointSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bits: int, frac_bits: int) -> torch.Tensor:
        return fixed_point_codes(x, bits, frac_bits) * 2.0**-frac_bits

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return grad, None, None


def fixed_point_codes(x: torch.Tensor, bits: int, frac_bits: int) -> torch.Tensor:
    """Signed ``bits``-bit integer codes ``clip(round_half_away(x * 2^frac_bits), -2^(b-1), 2^(b-1) - 1)``."""
    top = 2 ** (bits - 1)
    return round_half_away(x * 2.0**frac_bits).clamp(-top, top - 1)


class QuantMixin:
    """Shared state of the quantized training layers."""

    w_bits: int
    a_bits: int
    stochastic_weights: bool
    stochastic_activations: bool
    weight_quant: str
    g_bits: int | None
    first: bool
    input_bits: int
    input_frac_bits: int

    def setup_quant(self, w_bits: int, a_bits: int, stochastic_weights: bool = False,
                    stochastic_activations: bool = False, weight_quant: str = "linear", g_bits: int | None = None,
                    first: bool = False, input_bits: int = 8, input_frac_bits: int = 5) -> None:  # fmt: skip
        self.w_bits, self.a_bits, self.weight_quant = w_bits, a_bits, weight_quant
        self.stochastic_weights, self.stochastic_activations = stochastic_weights, stochastic_activations
        self.g_bits, self.first, self.input_bits, self.input_frac_bits = g_bits, first, input_bits, input_frac_bits

    def quant_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            return _FixedPointSTE.apply(x, self.input_bits, self.input_frac_bits)
        stochastic = self.stochastic_activations and self.training  # type: ignore[attr-defined]
        return quantize_activation(x, self.a_bits, stochastic)

    def quant_weight(self) -> torch.Tensor:
        stochastic = self.stochastic_weights and self.training  # type: ignore[attr-defined]
        return quantize_weight(self.weight, self.w_bits, stochastic, self.weight_quant)  # type: ignore[attr-defined]

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        first = f", first(input {self.input_bits}-bit fixed point)" if self.first else ""
        stochastic = f"stochastic w/a={self.stochastic_weights}/{self.stochastic_activations}"
        return f"{base}, w_bits={self.w_bits}, a_bits={self.a_bits}, {stochastic}{first}"


class QuantLinear(QuantMixin, nn.Linear):
    """``nn.Linear`` with QNN weight/input quantization (real weights kept for the update)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(self.quant_input(x), self.quant_weight())
        if self.bias is not None:
            out = out + self.bias
        return grad_quant(out, self.g_bits)


class QuantConv2d(QuantMixin, nn.Conv2d):
    """``nn.Conv2d`` (zero padding) with QNN weight/input quantization."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(self.quant_input(x), self.quant_weight(), None, self.stride, self.padding, self.dilation,
                       self.groups)  # fmt: skip
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return grad_quant(out, self.g_bits)


def from_float(module: nn.Linear | nn.Conv2d, **quant: Any) -> QuantLinear | QuantConv2d:
    """A quantized copy of ``module`` whose real weights are the float weights clipped to [-1, 1]."""
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise ValueError(f"QNN conv supports zero padding only, got padding_mode={module.padding_mode!r}")
        new: QuantLinear | QuantConv2d = QuantConv2d(
            module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,  # type: ignore[arg-type]
            module.dilation, module.groups, module.bias is not None,  # type: ignore[arg-type]
        )  # fmt: skip
    else:
        new = QuantLinear(module.in_features, module.out_features, module.bias is not None)
    new.setup_quant(**quant)
    with torch.no_grad():
        new.weight.copy_(module.weight.clamp(-1.0, 1.0))
        if module.bias is not None:
            new.bias.copy_(module.bias)  # type: ignore[union-attr]
    return new.to(module.weight.device)


class PackedBinaryLinear(nn.Module):
    """Inference layer running the XNOR-popcount kernel on 1-bit packed weights (32x smaller than fp32).

    Non-first layers compute ``sign(x) . sign(W) + b`` with one packed GEMM. The first layer takes real input,
    rounds it to fixed point and runs one GEMM on its 8 bit planes (QNN §2.5); a {0,1} bit ``x^n`` is written
    ``(s^n + 1) / 2`` with ``s^n`` = ±1, so ``x^n . w = (s^n . w + sum w) / 2``.
    """

    def __init__(self, layer: QuantLinear) -> None:
        super().__init__()
        if layer.w_bits != 1 or (layer.a_bits != 1 and not layer.first):
            raise ValueError("PackedBinaryLinear needs w_bits=1 and a_bits=1")
        w_sign = torch.where(layer.weight.detach() >= 0, 1.0, -1.0)
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.first, self.input_bits, self.input_frac_bits = layer.first, layer.input_bits, layer.input_frac_bits
        self.register_buffer("packed_weight", binary_ops.pack_signs(w_sign.float().cpu()).to(w_sign.device))
        self.register_buffer("weight_sum", w_sign.sum(dim=1) if layer.first else None)
        self.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False) if layer.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.first:
            rows = x.reshape(-1, self.in_features)
            out = fixed_point_gemm(rows, self.packed_weight, self.weight_sum, self.input_bits, self.input_frac_bits)
            out = out.reshape(*x.shape[:-1], self.out_features)
        else:
            out = binary_ops.binary_linear(x.float(), self.packed_weight, self.in_features)
        return out + self.bias if self.bias is not None else out

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, first={self.first}, packed=int64 words"


class PackedBinaryConv2d(nn.Module):
    """Inference conv on the XNOR kernel via im2col (zero padding reproduced exactly; see binary_ops)."""

    def __init__(self, layer: QuantConv2d) -> None:
        super().__init__()
        if layer.w_bits != 1 or (layer.a_bits != 1 and not layer.first) or layer.groups != 1:
            raise ValueError("PackedBinaryConv2d needs w_bits=1, a_bits=1 and groups=1")
        w_sign = torch.where(layer.weight.detach() >= 0, 1.0, -1.0).float()
        self.weight_shape = tuple(w_sign.shape)
        self.stride, self.padding, self.dilation = layer.stride, layer.padding, layer.dilation
        self.first, self.input_bits, self.input_frac_bits = layer.first, layer.input_bits, layer.input_frac_bits
        self.register_buffer("packed_weight", binary_ops.pack_signs(w_sign.flatten(1).cpu()).to(w_sign.device))
        self.register_buffer("weight_sum", w_sign.flatten(1).sum(dim=1) if layer.first else None)
        self.register_buffer("weight_sign", w_sign, persistent=False)  # for the padding correction only
        self.bias = nn.Parameter(layer.bias.detach().clone(), requires_grad=False) if layer.bias is not None else None
        self._corrections: dict[tuple[int, int], torch.Tensor | None] = {}

    def _correction(self, hw: tuple[int, int]) -> torch.Tensor | None:
        if not any(self.padding):  # type: ignore[arg-type]
            return None
        if hw not in self._corrections:
            self._corrections[hw] = binary_ops.padding_correction(
                self.weight_sign,
                hw,
                self.stride,
                self.padding,
                self.dilation,  # type: ignore[arg-type]
            )
        return self._corrections[hw]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.first:
            out = self._first_layer(x)
        else:
            out = binary_ops.binary_conv2d(
                x,
                self.packed_weight,
                self.weight_shape,
                self.stride,
                self.padding,  # type: ignore[arg-type]
                self.dilation,
                self._correction(tuple(x.shape[-2:])),
            )  # type: ignore[arg-type]
        return out + self.bias.view(1, -1, 1, 1) if self.bias is not None else out

    def _first_layer(self, x: torch.Tensor) -> torch.Tensor:
        # pad codes with 0 (all bit planes 0, i.e. -1 as ±1): then sum over all taps of x^n.w is exact
        kh, kw = self.weight_shape[2:]
        codes = fixed_point_codes(x, self.input_bits, self.input_frac_bits)
        rows, oh, ow = binary_ops.unfold_rows(codes, (kh, kw), self.stride, self.padding, self.dilation, 0.0)  # type: ignore[arg-type]
        out = fixed_point_gemm(rows, self.packed_weight, self.weight_sum, self.input_bits, self.input_frac_bits,
                               codes_given=True)  # fmt: skip
        return out.view(x.shape[0], oh, ow, -1).permute(0, 3, 1, 2).contiguous()

    def extra_repr(self) -> str:
        return f"weight={self.weight_shape}, stride={self.stride}, padding={self.padding}, first={self.first}"


def fixed_point_gemm(rows: torch.Tensor, w_packed: torch.Tensor, w_sum: torch.Tensor, bits: int, frac_bits: int,
                     codes_given: bool = False) -> torch.Tensor:  # fmt: skip
    """``round(x 2^f) 2^-f . sign(W)^T`` from ``bits`` packed bit planes in one XNOR GEMM (QNN §2.5).

    Two's complement: ``q = -2^(b-1) x^(b-1) + sum_{n<b-1} 2^n x^n``; each ``x^n . w = (s^n . w + sum w) / 2``, and
    the coefficients sum to -1, so ``q . w = (sum_n c_n s^n . w - sum w) / 2`` (all terms exact integers).
    """
    codes = rows if codes_given else fixed_point_codes(rows, bits, frac_bits)
    unsigned = torch.remainder(codes.to(torch.int64), 2**bits)
    shifts = torch.arange(bits, device=rows.device).view(bits, 1, 1)
    planes = ((unsigned.unsqueeze(0) >> shifts) & 1).float() - 0.5  # >= 0 exactly where the bit is 1
    k = rows.shape[1]
    dots = binary_ops.xnor_gemm(binary_ops.pack_signs(planes.reshape(-1, k)), w_packed, k, bits)
    coeffs = torch.tensor([2.0**n for n in range(bits - 1)] + [-(2.0 ** (bits - 1))], device=rows.device)
    total = torch.tensordot(coeffs, dots.view(bits, rows.shape[0], -1), dims=1)
    return (total - w_sum) * 2.0 ** (-frac_bits - 1)


class ShiftBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Shift-based batch normalisation (QNN Alg. 3): every multiplication by a batch statistic or by gamma is
    replaced by a multiplication by its power-of-two approximation AP2 (a shift in fixed-point hardware).

    ``C = x - mu``; ``var = mean(C * AP2(C))``; ``x_hat = C * AP2(1 / sqrt(var + eps))``; ``y = AP2(gamma) * x_hat
    + beta``. Running statistics as in ``nn.BatchNorm`` (the running variance tracks the AP2 variance). AP2 has a
    straight-through gradient. Works for [N, C] and [N, C, ...] inputs.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        dims = [d for d in range(x.dim()) if d != 1]
        shape = [1, -1] + [1] * (x.dim() - 2)
        if self.training or not self.track_running_stats:
            mean = x.mean(dim=dims)
            centred = x - mean.view(shape)
            var = (centred * _ap2_ste(centred)).mean(dim=dims)
            if self.training and self.track_running_stats:
                with torch.no_grad():
                    m = self.momentum if self.momentum is not None else 0.1
                    self.running_mean.mul_(1 - m).add_(m * mean.detach())  # type: ignore[union-attr]
                    self.running_var.mul_(1 - m).add_(m * var.detach())  # type: ignore[union-attr]
                    self.num_batches_tracked.add_(1)  # type: ignore[union-attr]
        else:
            centred = x - self.running_mean.view(shape)  # type: ignore[union-attr]
            var = self.running_var  # type: ignore[assignment]
        out = centred * _ap2_ste(torch.rsqrt(var + self.eps)).view(shape)
        if self.affine:
            out = out * _ap2_ste(self.weight).view(shape) + self.bias.view(shape)
        return out

    @classmethod
    def from_batchnorm(cls, bn: nn.modules.batchnorm._BatchNorm) -> ShiftBatchNorm:
        new = cls(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
        new.load_state_dict(bn.state_dict())
        return new.to(bn.running_mean.device if bn.running_mean is not None else "cpu")


def _ap2_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (ap2(x) - x).detach()


class ShiftAdaMax(torch.optim.Optimizer):
    """Shift-based AdaMax (QNN Alg. 4): AdaMax whose two multiplications are power-of-two shifts.

    ``m = b1 m + (1 - b1) g``; ``v = max(b2 v, |g|)``; ``theta -= AP2(lr / (1 - b1^t)) * m * AP2(1 / v)``.
    The bias correction uses ``1 - b1^t`` as in AdaMax (Kingma & Ba, Alg. 2); the paper's Alg. 4 prints
    ``(1 - b1)``. ``eps`` keeps ``1 / v`` finite where a gradient has always been 0.
    """

    def __init__(self, params: Any, lr: float = 2.0**-10, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:  # fmt: skip
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                state["step"] += 1
                m, v = state["m"], state["v"]
                m.mul_(beta1).add_(p.grad, alpha=1 - beta1)
                torch.maximum(v * beta2, p.grad.abs(), out=v)
                rate = float(ap2(torch.tensor(group["lr"] / (1 - beta1 ** state["step"]))))
                p.sub_(rate * m * ap2(1.0 / (v + group["eps"])))
        return loss
