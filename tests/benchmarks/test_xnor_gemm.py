"""Packed XNOR-popcount GEMM vs torch fp32 matmul at the same shape (QNN §5), measured interleaved in one process.

Gates only ratios (METHODOLOGY §10), generously: the binary product, including packing the activations, must be
faster than the fp32 matmul by at least ``MIN_RATIO``; the measured ratio is stored in ``extra_info``. Results are
checked bit-exact against the ``±1`` float product before timing.
"""

from __future__ import annotations

import pytest
import torch

from compressors.kernels import binary_ops
from harness.doctor.gemm import interleaved_best  # shared with `python -m harness doctor` (xnor_gemm step)

MIN_RATIO = 1.5  # the target is >= 2x; the gate leaves room for noise on a shared machine
# (M, K, N): the QNN MNIST MLP's layers at batch 100 and batch 1, and the paper's large square product
MLP_SHAPES = [(100, 784, 4096), (100, 4096, 4096), (100, 4096, 10), (1, 4096, 4096)]


def _compare(benchmark, m: int, k: int, n: int, rounds: int, bench_rounds: int = 3) -> None:  # type: ignore[no-untyped-def]
    threads = torch.get_num_threads()
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    w_t = w.T.contiguous()
    w_packed = binary_ops.pack_signs(w)
    exact = binary_ops.xnor_gemm(binary_ops.pack_signs(x), w_packed, k)
    assert torch.equal(exact, torch.where(x >= 0, 1.0, -1.0) @ torch.where(w_t >= 0, 1.0, -1.0))

    def binary() -> torch.Tensor:
        return binary_ops.xnor_gemm(binary_ops.pack_signs(x), w_packed, k)

    def dense() -> torch.Tensor:
        return x @ w_t

    binary(), dense()  # warm-up
    t_binary, t_dense = interleaved_best([binary, dense], rounds)
    ratio = t_dense / t_binary
    benchmark.extra_info.update(
        {"shape_mkn": [m, k, n], "threads": threads, "binary_s": t_binary, "fp32_s": t_dense, "speedup": ratio,
         "kernel": binary_ops.backend_name("cpu")}
    )  # fmt: skip
    benchmark.pedantic(binary, rounds=bench_rounds, iterations=1, warmup_rounds=0)
    assert ratio >= MIN_RATIO, f"XNOR GEMM only {ratio:.2f}x faster than fp32 at {(m, k, n)} ({threads} threads)"


@pytest.mark.benchmark
@pytest.mark.parametrize("m,k,n", MLP_SHAPES, ids=[f"{m}x{k}x{n}" for m, k, n in MLP_SHAPES])
def test_xnor_gemm_vs_fp32_mlp_shapes(benchmark, m: int, k: int, n: int) -> None:  # type: ignore[no-untyped-def]
    _compare(benchmark, m, k, n, rounds=7)


@pytest.mark.benchmark
@pytest.mark.slow
def test_xnor_gemm_vs_fp32_4096_cubed(benchmark) -> None:  # type: ignore[no-untyped-def]
    _compare(benchmark, 4096, 4096, 4096, rounds=2, bench_rounds=1)
