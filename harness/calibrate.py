"""This machine's own peak figures for the roofline (METHODOLOGY §8): matmul FLOP/s and memory copy bandwidth.

"On CPU, measure the machine's own matmul GFLOP/s once per run": one square matmul and one large tensor copy are
timed with ``torch.utils.benchmark.Timer.blocked_autorange`` (``num_threads`` set explicitly to the threads the
harness runs with, §1) and the result is cached per process, device and thread count. A matmul of n x n by n x n
costs 2 n^3 FLOPs; a copy of B bytes moves 2 B (read + write), as STREAM's "Copy" counts it.

On CUDA the same measurement runs in bf16 (the dtype the published H100 figures use) and the datasheet figures of
known GPUs are recorded beside the measured ones, never instead of them.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any

import torch

# Datasheet peaks (dense, no sparsity) for devices named in METHODOLOGY §8; looked up by substring of the GPU name.
DATASHEET = {
    "H100 SXM": {"peak_tflops_bf16": 989.0, "bandwidth_tb_s": 3.35, "source": "NVIDIA H100 datasheet"},
    "H100 80GB HBM3": {"peak_tflops_bf16": 989.0, "bandwidth_tb_s": 3.35, "source": "NVIDIA H100 datasheet (SXM)"},
    "H200": {"peak_tflops_bf16": 989.0, "bandwidth_tb_s": 4.8, "source": "NVIDIA H200 datasheet"},
}


def _timer_seconds(stmt: str, globals_: dict[str, Any], min_run_time: float, threads: int) -> float:
    # imported here, quietly: it pulls in torch.utils.cpp_extension, which warns "No CUDA runtime" on CPU hosts
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils import benchmark

    timer = benchmark.Timer(stmt=stmt, globals=globals_, num_threads=threads)
    return float(timer.blocked_autorange(min_run_time=min_run_time).median)


def measure_matmul_flops(device: str = "cpu", n: int | None = None, min_run_time: float = 0.3) -> dict[str, Any]:
    """Achieved FLOP/s of one ``n x n @ n x n`` matmul (fp32 on CPU, bf16 on CUDA)."""
    cuda = device.startswith("cuda")
    n = n or (8192 if cuda else 1024)
    dtype = torch.bfloat16 if cuda else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    stmt = "torch.mm(a, b); torch.cuda.synchronize()" if cuda else "torch.mm(a, b)"
    seconds = _timer_seconds(stmt, {"torch": torch, "a": a, "b": b}, min_run_time, torch.get_num_threads())
    return {"flops_per_s": 2.0 * n**3 / seconds, "n": n, "dtype": str(dtype).replace("torch.", ""), "seconds": seconds}


def measure_copy_bandwidth(
    device: str = "cpu", megabytes: int | None = None, min_run_time: float = 0.3
) -> dict[str, Any]:
    """Achieved bytes/s of ``dst.copy_(src)`` on a buffer far larger than the caches (counts read + write)."""
    cuda = device.startswith("cuda")
    megabytes = megabytes or (1024 if cuda else 128)
    elements = megabytes * 2**20 // 4
    src = torch.ones(elements, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    stmt = "dst.copy_(src); torch.cuda.synchronize()" if cuda else "dst.copy_(src)"
    seconds = _timer_seconds(stmt, {"torch": torch, "src": src, "dst": dst}, min_run_time, torch.get_num_threads())
    moved = 2 * elements * 4
    return {"bytes_per_s": moved / seconds, "buffer_bytes": elements * 4, "seconds": seconds}


def datasheet_for(device: str) -> dict[str, Any] | None:
    """Published peak figures of the GPU in use, if it is one METHODOLOGY names."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(torch.device(device))
    for key, figures in DATASHEET.items():
        if key in name:
            return {"gpu": name, **figures}
    return None


@functools.lru_cache(maxsize=8)
def _calibrate_cached(device: str, threads: int) -> dict[str, Any]:
    start = time.perf_counter()
    matmul = measure_matmul_flops(device)
    copy = measure_copy_bandwidth(device)
    return {
        "device": device,
        "threads": threads,
        "peak_flops_per_s": matmul["flops_per_s"],
        "bandwidth_bytes_per_s": copy["bytes_per_s"],
        "matmul": matmul,
        "copy": copy,
        "datasheet": datasheet_for(device),
        "method": "torch.utils.benchmark blocked_autorange median; matmul 2n^3 FLOPs; copy counts read + write",
        "calibration_s": time.perf_counter() - start,
    }


def calibrate(device: str = "cpu") -> dict[str, Any]:
    """Measured peak matmul FLOP/s and copy bandwidth of ``device``; measured once per process and thread count."""
    return dict(_calibrate_cached(device, torch.get_num_threads()))
