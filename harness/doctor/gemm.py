"""Packed XNOR-popcount GEMM against dense matmul (QNN arXiv 1609.07061 §5; BNN arXiv 1602.02830 §4).

GPU: the Triton kernel (through ``compressors.kernels.binary_ops``, the route the binary layers take) against
cuBLAS fp32 with TF32 off and against the bf16 tensor-core matmul, at 4096^3 and 8192^3. The binary product is
checked bit-exact against the float ``±1`` product before anything is timed. Times are CUDA-event times of blocks of
calls (each block >= ~2 ms so launch gaps do not count), the callables interleaved and their order rotated every
round (METHODOLOGY §1, §9); ratios are ratios of medians with a bootstrap interval. ``kernel`` times pre-packed
operands (what the BNN paper compares); ``with_packing`` also packs the activations every call.

CPU: the compiled kernel against torch fp32 matmul at one small shape, best of interleaved rounds (the logic of
``tests/benchmarks/test_xnor_gemm.py``), so the code path runs where there is no GPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

from harness.doctor.record import StepContext, StepFailed

GPU_SIZES = (4096, 8192)
CPU_SHAPE = (64, 2048, 1024)  # (M, K, N)


def interleaved_best(fns: list[Callable[[], Any]], rounds: int) -> list[float]:
    """Best-of-``rounds`` seconds of each callable, alternating A, B, A, B (frequency/neighbour drift cancels)."""
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


@contextlib.contextmanager
def tf32_off() -> Iterator[None]:
    """fp32 matmuls in full fp32 (``highest`` precision) inside the block; the previous setting is restored."""
    import torch

    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def cuda_interleaved(fns: dict[str, Callable[[], Any]], rounds: int, block_ms: float = 2.0) -> dict[str, list[float]]:
    """Milliseconds per call of each callable: CUDA events around blocks of calls, order rotated every round."""
    import torch

    calls: dict[str, int] = {}
    for name, fn in fns.items():  # warm-up, and the block length that makes a block last >= block_ms
        fn()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        fn()
        end.record()
        end.synchronize()
        calls[name] = max(1, math.ceil(block_ms / max(begin.elapsed_time(end), 1e-3)))
    names = list(fns)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            for _ in range(calls[name]):
                fns[name]()
            end.record()
            end.synchronize()
            samples[name].append(begin.elapsed_time(end) / calls[name])
    return samples


def _pm1(x: Any) -> Any:
    import torch

    return torch.where(x >= 0, 1.0, -1.0)


def gpu_comparison(n: int, rounds: int = 15) -> dict[str, Any]:
    """XNOR GEMM vs fp32 (TF32 off) and bf16 matmul at ``n^3`` on the current GPU."""
    import torch

    from compressors.kernels import binary_ops
    from harness.meters.stats import bootstrap_ratio_ci, summarize

    gen = torch.Generator(device="cuda").manual_seed(n)
    a = torch.randn(n, n, device="cuda", generator=gen)
    b = torch.randn(n, n, device="cuda", generator=gen)
    a_pm, b_t = _pm1(a), _pm1(b).t().contiguous()
    a16, b16 = a_pm.bfloat16(), b_t.bfloat16()
    pa, pb = binary_ops.pack_signs(a), binary_ops.pack_signs(b)
    with tf32_off():
        exact = bool(torch.equal(binary_ops.xnor_gemm(pa, pb, n), torch.mm(a_pm, b_t)))
        if not exact:
            raise StepFailed(f"XNOR GEMM is not bit-exact against the float ±1 matmul at {n}^3: not timed")
        fns = {
            "xnor_kernel": lambda: binary_ops.xnor_gemm(pa, pb, n),
            "xnor_with_packing": lambda: binary_ops.xnor_gemm(binary_ops.pack_signs(a), pb, n),
            "fp32": lambda: torch.mm(a_pm, b_t),
            "bf16": lambda: torch.mm(a16, b16),
        }
        ms = cuda_interleaved(fns, rounds)
    ratios = {
        "vs_fp32": bootstrap_ratio_ci(ms["fp32"], ms["xnor_kernel"]),
        "vs_bf16": bootstrap_ratio_ci(ms["bf16"], ms["xnor_kernel"]),
        "with_packing_vs_fp32": bootstrap_ratio_ci(ms["fp32"], ms["xnor_with_packing"]),
    }
    times = {name: summarize(values, gpu=True) for name, values in ms.items()}
    tflops = {name: 2.0 * n**3 / (t["p50"] * 1e-3) / 1e12 for name, t in times.items()}
    return {"shape_mkn": [n, n, n], "bit_exact": exact, "kernel": binary_ops.backend_name("cuda"), **ratios,
            "ms": times, "dense_equivalent_tflops": tflops, "rounds": rounds}  # fmt: skip


def cpu_comparison(m: int, k: int, n: int, rounds: int = 7) -> dict[str, Any]:
    """CPU kernel (with activation packing) vs torch fp32 matmul, best of interleaved rounds."""
    import torch

    from compressors.kernels import binary_ops

    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    w_t = w.T.contiguous()
    w_packed = binary_ops.pack_signs(w)
    exact = bool(torch.equal(binary_ops.xnor_gemm(binary_ops.pack_signs(x), w_packed, k), _pm1(x) @ _pm1(w_t)))
    if not exact:
        raise StepFailed(f"CPU XNOR GEMM is not bit-exact at {(m, k, n)}: not timed")

    def binary() -> Any:
        return binary_ops.xnor_gemm(binary_ops.pack_signs(x), w_packed, k)

    def dense() -> Any:
        return x @ w_t

    binary(), dense()  # warm-up
    t_binary, t_dense = interleaved_best([binary, dense], rounds)
    return {"shape_mkn": [m, k, n], "bit_exact": exact, "kernel": binary_ops.backend_name("cpu"),
            "threads": torch.get_num_threads(), "binary_s": t_binary, "fp32_s": t_dense, "speedup": t_dense / t_binary,
            "estimator": f"best of {rounds} interleaved rounds"}  # fmt: skip


def run(ctx: StepContext) -> None:
    ctx.record("device", ctx.device)
    if ctx.device == "cuda":
        gpu: dict[str, Any] = {}
        import torch

        for n in GPU_SIZES:
            gpu[str(n)] = gpu_comparison(n)
            ctx.record("gpu", gpu)
            torch.cuda.empty_cache()
        return
    ctx.record("cpu", cpu_comparison(*CPU_SHAPE))
