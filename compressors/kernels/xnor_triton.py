"""GPU XNOR-popcount GEMM in Triton (QNN, arXiv 1609.07061, §5; the authors' ``xnor_gemm`` CUDA kernel redone).

Same contract as the CPU kernel: ``C[m, n] = K - 2 * popcount(A[m] XOR B[n])`` over int64 words packed with bit =
``value >= 0``. Each program computes a ``BLOCK_M x BLOCK_N`` output tile, loading ``BLOCK_W`` words of A and B per
step and reducing ``popc(a ^ b)`` (``__nv_popcll`` through Triton's libdevice) over the word axis. Unlike the
reference CUDA kernel (inner dimension a multiple of 512 bits), every dimension is masked, so any K works.

Not verified on this machine (no GPU): importable everywhere; :func:`available` says whether it can run.
"""

from __future__ import annotations

import torch

try:  # Triton ships with CUDA builds of PyTorch; CPU-only installs may lack it
    import triton
    import triton.language as tl
    from triton.language.extra import libdevice

    HAVE_TRITON = True
except ImportError:  # pragma: no cover - depends on the install
    HAVE_TRITON = False


def available() -> tuple[bool, str]:
    """(usable, reason) for the Triton kernel on this machine."""
    if not HAVE_TRITON:
        return False, "triton is not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU visible to torch"
    return True, "ok"


if HAVE_TRITON:

    @triton.jit
    def _xnor_gemm_kernel(
        a_ptr, b_ptr, c_ptr, M, N, W, K,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_W: tl.constexpr,
    ):  # fmt: skip
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        for w0 in range(0, W, BLOCK_W):
            rw = w0 + tl.arange(0, BLOCK_W)
            a = tl.load(a_ptr + rm[:, None] * W + rw[None, :], mask=(rm[:, None] < M) & (rw[None, :] < W), other=0)
            b = tl.load(b_ptr + rn[:, None] * W + rw[None, :], mask=(rn[:, None] < N) & (rw[None, :] < W), other=0)
            x = a[:, None, :] ^ b[None, :, :]
            acc += tl.sum(libdevice.popc(x), axis=2)
        c = (K - 2 * acc).to(tl.float32)
        tl.store(c_ptr + rm[:, None] * N + rn[None, :], c, mask=(rm[:, None] < M) & (rn[None, :] < N))


def xnor_gemm(a_packed: torch.Tensor, b_packed: torch.Tensor, k: int) -> torch.Tensor:
    """``C = K - 2 popcount(A XOR B^T)`` on the GPU, float32 [M, N]. Raises RuntimeError where unavailable."""
    ok, reason = available()
    if not ok:
        raise RuntimeError(f"Triton XNOR kernel unavailable: {reason}")
    a, b = a_packed.contiguous(), b_packed.contiguous()
    m, words = a.shape
    n = b.shape[0]
    out = torch.empty(m, n, dtype=torch.float32, device=a.device)
    block_m, block_n, block_w = 32, 32, 8
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _xnor_gemm_kernel[grid](a, b, out, m, n, words, k, BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_W=block_w)
    return out
