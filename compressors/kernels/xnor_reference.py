"""Pure-PyTorch bit-packed XNOR-popcount reference (any device; the fallback when no compiled kernel is available).

Same packing convention and results as the compiled kernels: bit ``j`` of word ``w`` of a row is
``x[64 w + j] >= 0`` (sign(0) = +1), pad bits are 0, and ``a · b = K - 2 * popcount(a XOR b)`` (QNN, arXiv
1609.07061, §5). Popcount is the SWAR bit-count on int64 words (Hacker's Delight §5-1), exact under two's-complement
wrap-around. Slower than the compiled kernels but it really runs on packed bits.
"""

from __future__ import annotations

import torch

_M1, _M2, _M4, _H01 = 0x5555555555555555, 0x3333333333333333, 0x0F0F0F0F0F0F0F0F, 0x0101010101010101


def pack_signs(x: torch.Tensor) -> torch.Tensor:
    """[R, K] float -> [R, ceil(K / 64)] int64 words; bit = ``x >= 0``, pad bits 0."""
    rows, k = x.shape
    words = (k + 63) // 64
    bits = torch.zeros(rows, words * 64, dtype=torch.int64, device=x.device)
    bits[:, :k] = (x >= 0).to(torch.int64)
    shifts = torch.arange(64, dtype=torch.int64, device=x.device)
    # distinct bits never carry, so the sum is the OR (bit 63 wraps to the sign bit, as intended)
    return (bits.view(rows, words, 64) << shifts).sum(dim=-1)


def popcount64(x: torch.Tensor) -> torch.Tensor:
    """Number of set bits of each int64 element (SWAR)."""
    x = x - ((x >> 1) & _M1)
    x = (x & _M2) + ((x >> 2) & _M2)
    x = (x + (x >> 4)) & _M4
    return (x * _H01) >> 56


def xnor_gemm(a_packed: torch.Tensor, b_packed: torch.Tensor, k: int, chunk_elements: int = 1 << 24) -> torch.Tensor:
    """``C[m, n] = k - 2 popcount(A[m] XOR B[n])`` as float32 [M, N], computed in row chunks to bound memory."""
    m, words = a_packed.shape
    n = b_packed.shape[0]
    out = torch.empty(m, n, dtype=torch.float32, device=a_packed.device)
    step = max(1, chunk_elements // max(n * words, 1))
    for start in range(0, m, step):
        block = a_packed[start : start + step, None, :] ^ b_packed[None, :, :]
        counts = popcount64(block).sum(dim=-1)
        out[start : start + step] = (k - 2 * counts).to(torch.float32)
    return out


def unpack_signs(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of :func:`pack_signs`: [R, words] int64 -> [R, k] float ``±1``."""
    shifts = torch.arange(64, dtype=torch.int64, device=packed.device)
    bits = (packed[:, :, None] >> shifts) & 1
    return (bits.reshape(packed.shape[0], -1)[:, :k] * 2 - 1).to(torch.float32)
