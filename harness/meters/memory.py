"""Peak memory of inference.

CUDA: ``torch.cuda.max_memory_allocated`` after a reset (allocator peak, bytes). CPU: the process's peak resident set
(VmHWM) during the call after resetting it through ``/proc/self/clear_refs`` (Linux); where that is not possible the
value is ``None`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any


def _read_status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_memory(fn: Callable[[], Any], device: str = "cpu") -> dict[str, Any]:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
        return {"peak_bytes": int(peak), "increase_bytes": int(peak - before), "method": "cuda allocator peak"}
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError as exc:
        return {"peak_bytes": None, "reason": f"cannot reset peak RSS: {exc}"}
    rss_before = _read_status_kb("VmRSS")
    fn()
    hwm = _read_status_kb("VmHWM")
    if rss_before is None or hwm is None:
        return {"peak_bytes": None, "reason": "/proc/self/status unreadable"}
    return {
        "peak_bytes": hwm * 1024,
        "increase_bytes": max(hwm - rss_before, 0) * 1024,
        "method": "process peak RSS (VmHWM) after reset",
    }
