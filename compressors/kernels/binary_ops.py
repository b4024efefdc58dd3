"""Packed binary linear algebra as PyTorch operators: sign packing, XNOR-popcount GEMM, binary linear and conv.

Device dispatch: CPU tensors use the compiled kernel (:mod:`compressors.kernels.xnor_cpu`), CUDA tensors the
Triton kernel (:mod:`compressors.kernels.xnor_triton`); where neither can run, the pure-PyTorch packed reference
(:mod:`compressors.kernels.xnor_reference`) runs instead and :func:`backend_name` says so (a warning is issued
once). All routes give identical results.

The GEMM is registered as the operator ``cbench_qnn::xnor_gemm`` with a FLOP formula (``2 M N K``, the dense
count of the same product, so FLOP meters compare like with like; the binary-operation count is reported by the
compressor separately), so that FlopCounterMode and torch.compile see it instead of an opaque Python call.

Convolution (im2col): binarised input patches are unfolded into rows of length ``C kh kw`` and multiplied by the
packed ``[O, C kh kw]`` filters. Zero padding is not a ``±1`` value: the input is padded with ``+1`` (bit 1) and
the padded taps' contribution ``sum_{pad taps} w`` — input independent, precomputed once per input size — is
subtracted, which reproduces the zero-padded float convolution exactly.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

from compressors.kernels import xnor_cpu, xnor_reference, xnor_triton

_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def backend_name(device: torch.device | str = "cpu") -> str:
    """Which implementation runs on ``device``: 'cpu-<isa>', 'triton' or 'torch-reference' (with the reason)."""
    if torch.device(device).type == "cuda":
        ok, reason = xnor_triton.available()
        return "triton" if ok else f"torch-reference ({reason})"
    try:
        return f"cpu-{xnor_cpu.isa()}"
    except xnor_cpu.KernelUnavailable as exc:
        return f"torch-reference ({str(exc).splitlines()[0]})"


def _cpu_kernel_ok() -> bool:
    try:
        xnor_cpu.load()
        return True
    except xnor_cpu.KernelUnavailable as exc:
        _warn_once("cpu", f"XNOR kernel: {exc}")
        return False


def _pack_impl(x: torch.Tensor) -> torch.Tensor:
    if x.device.type == "cpu" and x.dtype == torch.float32 and _cpu_kernel_ok():
        return xnor_cpu.pack_signs(x)
    return xnor_reference.pack_signs(x)


def _gemm_impl(a_packed: torch.Tensor, b_packed: torch.Tensor, k: int, row_groups: int = 1) -> torch.Tensor:
    if a_packed.device.type == "cuda" and xnor_triton.available()[0]:
        return xnor_triton.xnor_gemm(a_packed, b_packed, k)
    if a_packed.device.type == "cpu" and _cpu_kernel_ok():
        return xnor_cpu.xnor_gemm(a_packed, b_packed, k)
    if a_packed.device.type == "cuda":
        _warn_once("cuda", f"XNOR kernel: {xnor_triton.available()[1]}; using the torch reference")
    return xnor_reference.xnor_gemm(a_packed, b_packed, k)


def _pack_meta(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.shape[0], (x.shape[1] + 63) // 64), dtype=torch.int64)


def _gemm_meta(a_packed: torch.Tensor, b_packed: torch.Tensor, k: int, row_groups: int = 1) -> torch.Tensor:
    return a_packed.new_empty((a_packed.shape[0], b_packed.shape[0]), dtype=torch.float32)


# Registered with the low-level torch.library.Library API: torch.library.custom_op imports the compiler stack
# (dynamo, sympy: ~800 modules, seconds) on the first call of every process.
_LIB = torch.library.Library("cbench_qnn", "DEF")  # a namespace owned by this module
_LIB.define("pack_signs(Tensor x) -> Tensor")
_LIB.define("xnor_gemm(Tensor a_packed, Tensor b_packed, int k, int row_groups=1) -> Tensor")
for _key in ("CPU", "CUDA"):
    _LIB.impl("pack_signs", _pack_impl, _key)
    _LIB.impl("xnor_gemm", _gemm_impl, _key)
_LIB.impl("pack_signs", _pack_meta, "Meta")
_LIB.impl("xnor_gemm", _gemm_meta, "Meta")


def pack_signs(x: torch.Tensor) -> torch.Tensor:
    """Pack the signs of a [R, K] matrix into int64 words [R, ceil(K / 64)]: bit = ``x >= 0`` (sign(0) = +1)."""
    return torch.ops.cbench_qnn.pack_signs(x)


def xnor_gemm(a_packed: torch.Tensor, b_packed: torch.Tensor, k: int, row_groups: int = 1) -> torch.Tensor:
    """``C[m, n] = k - 2 popcount(A[m] XOR B[n])`` (QNN §5) as float32 [M, N] from packed rows of A and B.

    ``row_groups`` only informs the FLOP formula: A holds that many bit planes of the same real rows (the
    fixed-point first layer), which together stand for one dense product.
    """
    return torch.ops.cbench_qnn.xnor_gemm(a_packed, b_packed, k, row_groups)


@register_flop_formula(torch.ops.cbench_qnn.xnor_gemm)
def _xnor_gemm_flops(
    a_shape: tuple[int, ...], b_shape: tuple[int, ...], k: int, row_groups: int = 1, *args: object, **kwargs: object
) -> int:
    """Dense-equivalent FLOPs ``2 M N K`` of the product (``M`` = rows of A / ``row_groups``)."""
    return 2 * (a_shape[0] // row_groups) * b_shape[0] * k


def binary_linear(x: torch.Tensor, w_packed: torch.Tensor, in_features: int) -> torch.Tensor:
    """``sign(x) @ sign(W)^T`` from packed weights: x [..., K] float -> [..., O] float (exact integers)."""
    rows = x.reshape(-1, in_features)
    out = xnor_gemm(pack_signs(rows.contiguous()), w_packed, in_features)
    return out.reshape(*x.shape[:-1], w_packed.shape[0])


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """Spatial output size of a convolution (PyTorch's formula)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def unfold_rows(
    x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
    dilation: tuple[int, int], pad_value: float,
) -> tuple[torch.Tensor, int, int]:  # fmt: skip
    """im2col: [B, C, H, W] -> rows [B * oh * ow, C kh kw] with the border padded by ``pad_value``."""
    b, _, h, w = x.shape
    ph, pw = padding
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph), value=pad_value)
    cols = F.unfold(x, kernel, dilation=dilation, stride=stride)  # [B, C kh kw, L]
    oh = conv_output_size(h, kernel[0], stride[0], ph, dilation[0])
    ow = conv_output_size(w, kernel[1], stride[1], pw, dilation[1])
    return cols.transpose(1, 2).reshape(b * oh * ow, -1), oh, ow


def padding_correction(
    w_sign: torch.Tensor, in_hw: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
    dilation: tuple[int, int],
) -> torch.Tensor:  # fmt: skip
    """``sum_{padded taps} w`` per output channel and position: [O, oh, ow] (zero when there is no padding)."""
    c = w_sign.shape[1]
    ph, pw = padding
    border = F.pad(torch.zeros(1, c, *in_hw, dtype=w_sign.dtype, device=w_sign.device), (pw, pw, ph, ph), value=1.0)
    return F.conv2d(border, w_sign, stride=stride, dilation=dilation)[0]


def binary_conv2d(
    x: torch.Tensor, w_packed: torch.Tensor, weight_shape: tuple[int, int, int, int], stride: tuple[int, int],
    padding: tuple[int, int], dilation: tuple[int, int], correction: torch.Tensor | None,
) -> torch.Tensor:  # fmt: skip
    """Zero-padded ``conv2d(sign(x), sign(W))`` via im2col and the XNOR GEMM; ``correction`` from
    :func:`padding_correction` (``None`` when there is no padding). Returns [B, O, oh, ow] float."""
    out_ch, _, kh, kw = weight_shape
    rows, oh, ow = unfold_rows(x, (kh, kw), stride, padding, dilation, pad_value=1.0)
    k = rows.shape[1]
    out = xnor_gemm(pack_signs(rows.contiguous()), w_packed, k)
    out = out.view(x.shape[0], oh, ow, out_ch).permute(0, 3, 1, 2)
    if correction is not None:
        out = out - correction
    return out.contiguous()
