"""Executed low-bit kernels: the packed XNOR-popcount GEMM (CPU: compiled C; GPU: Triton; fallback: PyTorch)."""
