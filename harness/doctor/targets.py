"""The targets the kit reports against, evaluated from the steps' figures (stdlib only).

Each target reads one figure of one step; it is ``pass``/``fail`` when that figure was measured, and ``not
measured`` with the reason otherwise (step skipped, failed, timed out before reaching it, or a CPU-only run).
Entries with ``"info"`` status carry figures the issue asks to state without a threshold (the bf16 ratio, the
efficiency at the other batch sizes).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

COMPARE = {"<": operator.lt, ">=": operator.ge}


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    step: str
    comparison: str | None  # "<", ">=", or None for a figure that is only stated
    threshold: float | None
    read: Callable[[dict[str, Any]], tuple[float, dict[str, Any]]]


def _dig(figures: dict[str, Any], *keys: str) -> Any:
    value: Any = figures
    for key in keys:
        if not isinstance(value, dict) or value.get(key) is None:
            reason = value.get("reason") if isinstance(value, dict) and value.get("reason") else None
            raise LookupError(reason or f"figure {'.'.join(keys)} was not recorded")
        value = value[key]
    return value


def _energy(key: str, figure: str) -> Callable[[dict[str, Any]], tuple[float, dict[str, Any]]]:
    def read(figures: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        models = _dig(figures, "models")
        per_model = {name: float(_dig(models, name, key, figure)) for name in ("dense", "thinned") if name in models}
        if not per_model:
            raise LookupError("no model's energy was measured")
        return max(per_model.values()), {"per_model": per_model, "worst_of": sorted(per_model)}

    return read


def _overhead(figures: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    if figures.get("device") != "cuda":
        raise LookupError("measured on CPU only (the target is for the CUDA-event loop on a GPU)")
    gpu = _dig(figures, "gpu")
    return float(_dig(gpu, "overhead")), {"callable_ms": gpu.get("callable_ms"), "method": gpu.get("method")}


def _thinned(backend: str, batch: str) -> Callable[[dict[str, Any]], tuple[float, dict[str, Any]]]:
    def read(figures: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        point = _dig(figures, "points", backend, batch)
        detail = {k: point.get(k) for k in ("achieved", "ideal", "low", "high", "verdict", "aa_spread")}
        return float(_dig(point, "efficiency")), detail

    return read


def _gemm(size: str, versus: str) -> Callable[[dict[str, Any]], tuple[float, dict[str, Any]]]:
    def read(figures: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        if figures.get("device") != "cuda":
            raise LookupError("measured on CPU only (the target compares the Triton kernel with cuBLAS)")
        ratio = _dig(figures, "gpu", size, versus)
        return float(_dig(ratio, "ratio")), {"low": ratio.get("low"), "high": ratio.get("high")}

    return read


TARGETS: tuple[Target, ...] = (
    Target("energy_cv", "NVML energy: CV of J/inference across windows < 2 % (worst model)", "energy", "<", 0.02,
           _energy("counter", "cv_across_windows")),
    Target("energy_counter_vs_sampling", "NVML energy counter and instantaneous-power sampling agree within 5 %",
           "energy", "<", 0.05, _energy("agreement", "relative_difference")),
    Target("latency_meter_overhead_gpu", "latency meter overhead < 1 % at 1 ms per call on GPU", "latency_overhead",
           "<", 0.01, _overhead),
    Target("thinned_resnet50_compile_bs256", "thinned ResNet-50 (45 % FLOPs removed): achieved/ideal >= 0.8 on "
           "compile at batch 256", "thinned_speedup", ">=", 0.8, _thinned("compile", "256")),
    Target("xnor_gemm_vs_cublas_fp32_8192", "packed XNOR GEMM >= 3.4x cuBLAS fp32 (TF32 off) at 8192^3 (the BNN "
           "paper's ratio, GTX750)", "xnor_gemm", ">=", 3.4, _gemm("8192", "vs_fp32")),
    Target("xnor_gemm_vs_cublas_fp32_4096", "packed XNOR GEMM vs cuBLAS fp32 at 4096^3", "xnor_gemm", None, None,
           _gemm("4096", "vs_fp32")),
    Target("xnor_gemm_vs_bf16_8192", "packed XNOR GEMM vs bf16 tensor-core matmul at 8192^3", "xnor_gemm", None, None,
           _gemm("8192", "vs_bf16")),
    Target("xnor_gemm_vs_bf16_4096", "packed XNOR GEMM vs bf16 tensor-core matmul at 4096^3", "xnor_gemm", None, None,
           _gemm("4096", "vs_bf16")),
    *(
        Target(f"thinned_resnet50_{backend}_bs{batch}", f"thinned ResNet-50 achieved/ideal, {backend}, batch {batch}",
               "thinned_speedup", None, None, _thinned(backend, batch))
        for backend, batch in (("compile", "32"), ("compile", "1"), ("eager", "256"), ("eager", "32"), ("eager", "1"))
    ),
)  # fmt: skip


def _step_problem(entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return "its step did not run"
    if entry["status"] in ("ok", "timeout"):
        return None
    detail = entry.get("reason") or (entry.get("error") or {}).get("message") or ""
    return f"step {entry['name']} {entry['status']}" + (f": {detail}" if detail else "")


def evaluate_one(target: Target, entry: dict[str, Any] | None) -> dict[str, Any]:
    """One target's result: pass / fail / info with its value, or not measured with the reason."""
    result: dict[str, Any] = {"name": target.name, "description": target.description, "step": target.step}
    if target.comparison is not None:
        result["target"] = f"{target.comparison} {target.threshold}"
    problem = _step_problem(entry)
    try:
        if problem is not None and not (entry or {}).get("figures"):
            raise LookupError(problem)
        value, detail = target.read((entry or {}).get("figures") or {})
    except (LookupError, TypeError, ValueError) as exc:
        return {**result, "status": "not measured", "value": None, "reason": str(exc).strip("'\"") or problem}
    if target.comparison is None or target.threshold is None:
        status = "info"
    else:
        status = "pass" if COMPARE[target.comparison](value, target.threshold) else "fail"
    return {**result, "status": status, "value": value, "detail": detail}


def evaluate(steps: dict[str, dict[str, Any]], device_used: str) -> list[dict[str, Any]]:
    """Every target against the steps recorded so far (``steps`` keyed by name)."""
    results = [evaluate_one(target, steps.get(target.step)) for target in TARGETS]
    for result in results:
        result["device"] = device_used
    return results
