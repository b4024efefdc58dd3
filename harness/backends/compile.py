"""``torch.compile`` backend (METHODOLOGY §1: compile outside the timer, fail on a recompile inside it).

``prepare`` compiles by running the example inputs once and records that time as ``info["compile_time_s"]``
(a metric of its own, never mixed into latency). New input shapes met during warm-up (the next batch size of a
sweep) recompile there, outside the timed region. The latency meter enters :meth:`CompiledRunnable.timed_region`
around its timed loop: inside it ``torch._dynamo.config.error_on_recompile`` is on, so dynamo raises instead of
recompiling, and dynamo's own counters (``frames.ok`` and ``stats.unique_graphs``) are compared on exit as a second
check; either way the measurement fails with :class:`RecompileInTimedRegion`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from harness.backends.base import BACKENDS, Backend, BackendUnavailable, Runnable


class RecompileInTimedRegion(RuntimeError):
    """torch.compile recompiled while latency was being timed: the samples would include compile time."""


def _compile_counts() -> tuple[int, int]:
    from torch._dynamo.utils import counters

    return int(counters["frames"]["ok"]), int(counters["stats"]["unique_graphs"])


class CompiledRunnable(Runnable):
    def __init__(self, compiled: Any, device: str, info: dict[str, Any]) -> None:
        self.compiled = compiled
        self.device = device
        self.info = info

    def __call__(self, *inputs: Any) -> Any:
        with torch.inference_mode():
            return self.compiled(*inputs)

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()

    @contextmanager
    def timed_region(self) -> Iterator[None]:
        """Any recompilation inside this block raises :class:`RecompileInTimedRegion`."""
        import torch._dynamo

        before = _compile_counts()
        try:
            with torch._dynamo.config.patch(error_on_recompile=True):
                yield
        except Exception as exc:
            if "recompil" in str(exc).lower() or type(exc).__name__ == "RecompileError":
                raise RecompileInTimedRegion(f"torch.compile recompiled inside the timed region: {exc}") from exc
            raise
        after = _compile_counts()
        if after != before:
            raise RecompileInTimedRegion(
                f"torch.compile compiled new frames/graphs inside the timed region "
                f"(frames, graphs: {before} -> {after})"
            )


@BACKENDS.register("compile")
class CompileBackend(Backend):
    """``torch.compile(model, backend=..., mode=..., dynamic=...)``; the defaults are torch's (inductor, 'default')."""

    name = "compile"

    def __init__(
        self, backend: str = "inductor", mode: str | None = None, dynamic: bool | None = None, **_: Any
    ) -> None:
        self.backend = backend
        self.mode = mode
        self.dynamic = dynamic

    def check_available(self, device: str) -> None:
        if not hasattr(torch, "compile"):
            raise BackendUnavailable(f"torch {torch.__version__} has no torch.compile")
        if self.backend == "inductor" and not device.startswith("cuda"):
            import shutil

            if shutil.which("cc") is None and shutil.which("gcc") is None and shutil.which("clang") is None:
                raise BackendUnavailable("inductor on CPU needs a C++ compiler (cc/gcc/clang) and none is on PATH")

    def prepare(self, model: nn.Module, example_inputs: tuple[Any, ...], device: str) -> Runnable:
        import torch._dynamo

        model = model.to(device).eval()
        torch._dynamo.reset()
        compiled = torch.compile(model, backend=self.backend, mode=self.mode, dynamic=self.dynamic)
        start = time.perf_counter()
        with torch.inference_mode():
            compiled(*example_inputs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        compile_time = time.perf_counter() - start
        info = {
            "backend": self.name,
            "compiler_backend": self.backend,
            "mode": self.mode or "default",
            "dynamic": self.dynamic,
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "compile_time_s": compile_time,
            "compile_note": "first call with the example inputs (batch 1); later shapes compile during warm-up",
        }
        return CompiledRunnable(compiled, device, info)
