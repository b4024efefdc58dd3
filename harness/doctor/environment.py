"""Step 1, environment: GPU name, driver, CUDA, clocks, NVML counter support, persistence and power limits, torch /
triton / ONNX Runtime versions, and which of the project's dependencies are importable here.

Every NVML query is tried on its own; an unsupported one is recorded as ``{"unsupported": "<error>"}`` rather than
failing the step. Nothing is changed on the device (METHODOLOGY §0: record clocks and limits, never set them).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib import metadata
from typing import Any

from harness.doctor.record import PROJECT_ROOT, StepContext


def _try(fn: Callable[[], Any]) -> Any:
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - NVMLError_NotSupported and friends are findings, not failures
        return {"unsupported": f"{type(exc).__name__}: {exc}"}
    return value.decode() if isinstance(value, bytes) else value


def dependency_check() -> dict[str, Any]:
    """Installed version of every ``pyproject.toml`` dependency; the missing ones listed, pins that differ noted."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return {"reason": "tomllib needs Python >= 3.11"}
    try:
        project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, ValueError) as exc:
        return {"reason": f"pyproject.toml unreadable: {exc}"}
    installed: dict[str, str | None] = {}
    differs: dict[str, dict[str, str | None]] = {}
    for requirement in project.get("dependencies", []):
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        try:
            installed[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed[name] = None
        pin = requirement.split("==", 1)[1].strip() if "==" in requirement else None
        version = installed[name]
        if pin and version and version.split("+")[0] != pin:
            differs[name] = {"pinned": pin, "installed": version}
    missing = sorted(name for name, version in installed.items() if version is None)
    return {"installed": installed, "missing": missing, "differs_from_pin": differs}


def torch_facts() -> dict[str, Any]:
    """torch build, CUDA/cuDNN versions, device properties, TF32 flags, triton version."""
    import torch

    facts: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "threads": torch.get_num_threads(),
    }
    try:
        import triton

        facts["triton"] = triton.__version__
    except Exception as exc:  # noqa: BLE001 - ImportError, or a broken install
        facts["triton"] = None
        facts["triton_reason"] = f"{type(exc).__name__}: {exc}"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(
            cudnn=torch.backends.cudnn.version(),
            device_count=torch.cuda.device_count(),
            device={"name": props.name, "capability": f"{props.major}.{props.minor}",
                    "total_memory_bytes": props.total_memory, "multiprocessors": props.multi_processor_count},
        )  # fmt: skip
    return facts


def cuda_usable(facts: dict[str, Any]) -> dict[str, Any]:
    """{"available", "name", "reason"}: whether the kit can use CUDA, and why not."""
    import os

    if facts["cuda_available"]:
        import torch

        try:  # is_available() can be True while the first kernel fails (driver / build mismatch)
            ok = torch.ones(4, device="cuda").add_(1).sum().item() == 8.0
        except Exception as exc:  # noqa: BLE001
            return {"available": False, "name": facts["device"]["name"], "reason": f"a CUDA kernel failed: {exc}"}
        if ok:
            return {"available": True, "name": facts["device"]["name"], "reason": "ok"}
        return {"available": False, "name": facts["device"]["name"], "reason": "a CUDA kernel returned a wrong sum"}
    if facts["cuda_build"] is None:
        reason = f"torch {facts['torch']} is a CPU-only build"
    else:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        reason = f"torch.cuda.is_available() is False (no GPU or driver visible; CUDA_VISIBLE_DEVICES={visible!r})"
    return {"available": False, "name": None, "reason": reason}


def _clocks(n: Any, h: Any) -> dict[str, Any]:
    names = {"sm": n.NVML_CLOCK_SM, "mem": n.NVML_CLOCK_MEM, "graphics": n.NVML_CLOCK_GRAPHICS}
    queries = {
        "current_mhz": n.nvmlDeviceGetClockInfo,
        "max_mhz": n.nvmlDeviceGetMaxClockInfo,
        "applications_mhz": n.nvmlDeviceGetApplicationsClock,
    }
    return {
        label: {clock: _try(functools.partial(query, h, code)) for clock, code in names.items()}
        for label, query in queries.items()
    }


def _power(n: Any, h: Any) -> dict[str, Any]:
    def watts(fn: Callable[[], Any]) -> Any:
        value = _try(fn)
        return value / 1000.0 if isinstance(value, (int, float)) else value

    constraints = _try(lambda: n.nvmlDeviceGetPowerManagementLimitConstraints(h))
    if isinstance(constraints, (list, tuple)):
        constraints = [c / 1000.0 for c in constraints]
    return {
        "enforced_limit_w": watts(lambda: n.nvmlDeviceGetEnforcedPowerLimit(h)),
        "management_limit_w": watts(lambda: n.nvmlDeviceGetPowerManagementLimit(h)),
        "default_limit_w": watts(lambda: n.nvmlDeviceGetPowerManagementDefaultLimit(h)),
        "limit_constraints_w": constraints,
        "usage_1s_average_w": watts(lambda: n.nvmlDeviceGetPowerUsage(h)),
    }


def nvml_facts() -> dict[str, Any]:
    """GPU 0 through NVML: identity, driver and CUDA driver, clocks, power limits, persistence, counter support."""
    from harness.meters.energy import EnergyUnavailable, NvmlDevice

    try:
        device = NvmlDevice(0)
    except EnergyUnavailable as exc:
        return {"available": False, "reason": str(exc)}
    n, h = device.nvml, device.handle
    cuda_driver = _try(n.nvmlSystemGetCudaDriverVersion_v2)
    if isinstance(cuda_driver, int):  # 12040 -> "12.4"
        cuda_driver = f"{cuda_driver // 1000}.{cuda_driver % 1000 // 10}"
    return {
        "available": True,
        "device_count": _try(n.nvmlDeviceGetCount),
        "state": _try(device.state),
        "cuda_driver": cuda_driver,
        "persistence_mode": _try(lambda: n.nvmlDeviceGetPersistenceMode(h)),
        "performance_state": _try(lambda: n.nvmlDeviceGetPerformanceState(h)),
        "compute_mode": _try(lambda: n.nvmlDeviceGetComputeMode(h)),
        "mig_mode": _try(lambda: list(n.nvmlDeviceGetMigMode(h))),
        "memory_total_bytes": _try(lambda: n.nvmlDeviceGetMemoryInfo(h).total),
        "clocks": _clocks(n, h),
        "power": _power(n, h),
        "energy_counter_mj": _try(device.total_energy_mj),
        "power_instant_w": _try(device.power_instant_w),
        "clock_event_reasons": _try(device.clock_event_reasons),
    }


def onnxruntime_facts() -> dict[str, Any]:
    try:
        import onnxruntime
    except ImportError as exc:
        return {"version": None, "reason": str(exc)}
    providers = onnxruntime.get_available_providers()
    return {"version": onnxruntime.__version__, "providers": providers, "cuda": "CUDAExecutionProvider" in providers}


def _section(fn: Callable[[], Any]) -> Any:
    """``fn()``, or ``{"error": ...}``: one broken query must not hide the rest of the environment."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - recorded
        return {"error": f"{type(exc).__name__}: {exc}"}


def run(ctx: StepContext) -> None:
    """Record the environment; ``figures["cuda"]`` tells the orchestrator whether the GPU steps can run.

    Only a missing torch fails the step (after the torch-free facts are recorded); every other query is guarded.
    """
    ctx.record("dependencies", _section(dependency_check))
    ctx.record("nvml", _section(nvml_facts))
    ctx.record("onnxruntime", _section(onnxruntime_facts))
    torch = torch_facts()
    ctx.record("torch", torch)
    ctx.record("cuda", _section(lambda: cuda_usable(torch)))
    from harness.environment import commit_info, machine_info

    ctx.record("machine", _section(machine_info))
    ctx.record("commit", _section(commit_info))
    missing = (ctx.figures["dependencies"] or {}).get("missing") or []
    if missing:
        ctx.note(f"dependencies not installed here: {', '.join(missing)} (steps that import them will fail)")
