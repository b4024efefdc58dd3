"""The steps of the doctor, their order, time limits and device needs (stdlib only: imported by the CLI parser).

Time limits are those of the default 480 s budget, sized for one H200 (estimates, not yet measured on one); a larger
``--budget-s`` scales them up proportionally (never down), and every limit is capped by the budget that is left.
The last step is open-ended: it takes whatever the budget has left, and it orders its own work by priority.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BUDGET_S = 480.0


@dataclass(frozen=True)
class Step:
    """One step of the kit.

    Attributes:
        name: identifier (summary key, log and figure file names, ``--only`` value).
        title: what it checks, for people.
        target: ``"module:function"`` the worker runs; the function takes a :class:`harness.doctor.record.StepContext`.
        limit_s: the step's own time limit at the default budget (0 with ``open_ended``).
        gpu: ``"required"`` (skipped without a CUDA GPU) or ``"any"`` (runs a CPU version without one).
        min_s: not started when less than this is left of the budget.
        open_ended: takes all of the budget that is left.
    """

    name: str
    title: str
    target: str
    limit_s: float
    gpu: str = "any"
    min_s: float = 5.0
    open_ended: bool = False


STEPS: tuple[Step, ...] = (
    Step(
        "environment",
        "GPU name, driver, CUDA, clocks, NVML counter support, persistence/power limits, package versions",
        "harness.doctor.environment:run",
        45.0,
    ),
    Step(
        "gpu_tests",
        "pytest -m gpu: Triton XNOR kernel bit-exact, CUDA-event vs host latency, NVML counter and window rules",
        "harness.doctor.gputests:run",
        90.0,
        gpu="required",
        min_s=20.0,
    ),
    Step(
        "real_run",
        "one --device cuda ResNet-18 run through harness.runner.execute, eager and compile backends",
        "harness.doctor.realrun:run",
        200.0,
        gpu="required",
        min_s=60.0,
    ),
    Step(
        "latency_overhead",
        "latency meter overhead at 1 ms per call (CUDA-event loop on GPU, host loop on CPU)",
        "harness.doctor.overhead:run",
        30.0,
    ),
    Step(
        "xnor_gemm",
        "packed XNOR GEMM vs cuBLAS fp32 (TF32 off) and bf16 at 4096^3 and 8192^3 (CPU kernel vs fp32 on CPU)",
        "harness.doctor.gemm:run",
        45.0,
        min_s=10.0,
    ),
    Step(
        "qnn_mlp",
        "QNN MLP: executed binary model (packed XNOR kernel) vs its fp32 twin, interleaved",
        "harness.doctor.qnnmlp:run",
        45.0,
        min_s=10.0,
    ),
    Step(
        "energy",
        "NVML energy per inference, dense vs thinned ResNet-50: counter and power sampling, >= 3 windows of >= 5 s",
        "harness.doctor.energy_claim:run",
        80.0,
        gpu="required",
        min_s=45.0,
    ),
    Step(
        "thinned_speedup",
        "thinned (45 % FLOPs removed) vs dense ResNet-50, interleaved, batch 1/32/256, eager and compile",
        "harness.doctor.thinned_speedup:run",
        0.0,
        gpu="required",
        min_s=30.0,
        open_ended=True,
    ),
)

STEP_NAMES = tuple(step.name for step in STEPS)


def scale(budget_s: float) -> float:
    """Factor applied to the steps' limits: budget / default budget, never below 1."""
    return max(1.0, budget_s / DEFAULT_BUDGET_S)
