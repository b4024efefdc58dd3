"""The QNN MNIST MLP (arXiv 1609.07061): the executed binary model against its fp32 twin, timed interleaved.

The fp32 twin is the workload's model (784-4096x3-10 with BN; untrained, since timing needs no trained weights);
the binary model is what the ``qnn`` compressor returns for ``w_bits = a_bits = 1``: :func:`quantize_model` then
:func:`to_executed`, whose binary layers run the packed XNOR kernel (Triton on CUDA, the compiled kernel on CPU).
Before timing, the executed model is checked against the fake-quant model it was packed from. The comparison is
:func:`harness.speedup.interleaved_comparison` (fp32, fp32 again, binary in turn; the A/A spread decides "no
difference"), at batch 1 and the paper's batch 100. On CPU the hidden width is 1024 (an explicit, recorded option)
to keep the check cheap.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from harness.doctor.record import StepContext, StepFailed

BATCHES = (1, 100)


def build_models(device: str, hidden: int) -> dict[str, Any]:
    """{"fp32", "fake_quant", "executed", "workload"}: the MLP and its binary versions on ``device``."""
    import torch

    from compressors.qnn import QNNConfig, quantize_model, to_executed
    from workloads import WORKLOADS

    workload = WORKLOADS.get("mlp")(profile="tiny", dataset="digits", options={"hidden": hidden})
    torch.manual_seed(0)
    fp32 = workload.build_model().to(device).eval()
    fake_quant = quantize_model(copy.deepcopy(fp32), QNNConfig()).to(device).eval()
    executed = to_executed(fake_quant).to(device).eval()
    return {"fp32": fp32, "fake_quant": fake_quant, "executed": executed, "workload": workload}


def agreement(models: dict[str, Any], device: str) -> dict[str, Any]:
    """Max abs difference of executed vs fake-quant outputs on real inputs (exact integers up to BN rounding)."""
    import torch

    inputs = models["workload"].example_inputs(32, device)
    with torch.inference_mode():
        expected, got = models["fake_quant"](*inputs), models["executed"](*inputs)
    error = float((got - expected).abs().max())
    scale = float(expected.abs().max())
    return {"max_abs_error": error, "max_abs_output": scale, "ok": error <= 1e-3 * max(scale, 1.0)}


def compare(models: dict[str, Any], device: str, batch: int) -> dict[str, Any]:
    """fp32 time / binary time at ``batch`` (ratio of medians, bootstrap CI, A/A verdict)."""
    from harness.backends import BACKENDS
    from harness.doctor.interleave import compare as interleaved
    from harness.meters.latency import MeasureSettings

    cuda = device == "cuda"
    settings = MeasureSettings(min_time_s=1.0 if cuda else 0.3, min_count=50 if cuda else 20,
                               warmup_s=0.3, warmup_count=10)  # fmt: skip
    pool = [models["workload"].example_inputs(batch, device, offset=i) for i in range(64 if batch == 1 else 4)]
    eager = BACKENDS.get("eager")()
    dense = eager.prepare(models["fp32"], pool[0], device)
    dense_copy = eager.prepare(copy.deepcopy(models["fp32"]), pool[0], device)
    binary = eager.prepare(models["executed"], pool[0], device)
    result = interleaved(dense, dense_copy, binary, pool, settings, device)
    return {
        **result,
        "batch_size": batch,
        "settings": dataclasses.asdict(settings),
        "fp32_over_binary": result.get("ratio"),
    }


def run(ctx: StepContext) -> None:
    from compressors.kernels import binary_ops

    hidden = 4096 if ctx.device == "cuda" else 1024
    ctx.record("device", ctx.device)
    ctx.record("model", {"workload": "mlp", "hidden": hidden, "weights": "untrained (timing only)",
                         "kernel": binary_ops.backend_name(ctx.device), "execution": "executed"})  # fmt: skip
    models = build_models(ctx.device, hidden)
    check = agreement(models, ctx.device)
    ctx.record("agreement_with_fake_quant", check)
    if not check["ok"]:
        raise StepFailed(f"executed binary MLP disagrees with its fake-quant model: {check}")
    results: dict[str, Any] = {}
    for batch in BATCHES:
        results[str(batch)] = compare(models, ctx.device, batch)
        ctx.record("speedup_by_batch", results)
