"""One grid over every registered compressor x every small workload (DESIGN.md, Tests): the compressor runs its whole
``apply`` lifecycle (training phases included) on a shrunk real workload, and the test checks that the model's
outputs are finite and keep their shape, that the summary's claims are true of the produced model, and that two runs
with the same seed give the same model.

Workloads (real builders with explicit, small knobs): ``lenet3`` (cnn) and ``mlp`` (mlp) on the embedded digits,
``lstm_char`` (rnn) on the Debian fortunes corpus (skipped where absent). Pairs whose kinds do not fit are skipped
with the compressor's own incompatibility message. Multi-task compressors (PackNet, Piggyback) get the 2-task
sequence ``digits[0-4], digits[5-9]`` (task 1 is the run's dataset). The search compressor (UNAS) gets the
``proxyless_search`` space at width 0.1, the only pair run on it. Transformer (``bert``: its tiny profile is the
22M-parameter pretrained MiniLM) and speech (``deepspeech2``: synthesized audio) workloads have no seconds-scale
variant; their compressors' paths are covered by tests/workloads/test_bert.py and test_deepspeech2.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from compressors import COMPRESSORS
from compressors.base import CompressedModel, IncompatibleWorkloadError
from harness.config import RunConfig
from harness.context import RunContext
from harness.meters.flops import count_flops
from harness.runner import prepare, seed_everything
from workloads.data.text import FORTUNES_SYSTEM_DIR

SMALL = {"epochs": "1", "max_train_samples": "256", "max_val_samples": "128", "batch_size": "32"}
WORKLOADS: dict[str, dict[str, Any]] = {
    "lenet3": {"dataset": "digits", "options": {}, "recipe": SMALL},
    "mlp": {"dataset": "digits", "options": {"hidden": "64", "num_hidden_layers": "2"}, "recipe": SMALL},
    "lstm_char": {
        "dataset": "fortunes",
        "options": {"hidden": "24", "layers": "1", "bptt": "20"},
        "recipe": {"epochs": "1", "max_train_samples": "4000", "max_val_samples": "1000"},
    },
    # a search space is input to the search compressor only (every other compressor takes a fixed network)
    "proxyless_search": {"dataset": "digits", "options": {"width_multiplier": "0.1"}, "recipe": SMALL, "only": "unas"},
}
# The shortest schedule of each compressor that still runs every one of its phases.
ARGS: dict[str, dict[str, str]] = {
    "none": {},
    "dsd": {"sparse_epochs": "1", "redense_epochs": "1"},
    "llr": {"sparse_epochs": "1", "redense_epochs": "1"},
    "taylor": {
        "target": "flops",
        "target_value": "0.2",
        "frequency": "2",
        "prune_per_iteration": "10",
        "finetune_epochs": "1",
        "export": "false",
    },  # fmt: skip
    "qnn": {"epochs": "1"},
    "ternary_rnn": {"epochs": "1", "method": "ternary"},
    "lns_madam": {"epochs": "1"},
    "deepinversion": {"iterations": "20", "batch_size": "16", "batches": "2", "kd_epochs": "1"},
    "packnet": {"finetune_epochs": "1", "post_prune_epochs": "1", "controls": "", "latency": "false"},
    "piggyback": {"epochs": "1", "controls": "", "latency": "false"},
    "unas": {"search_epochs": "1", "warmup_epochs": "1", "random_search": "2", "latency_batch_size": "2",
             "latency_repeats": "2"},  # fmt: skip
}
# Multi-task compressors (kind "multitask") get this 2-task sequence; task 1 is the run's dataset.
TASKS = ["digits[0-4]", "digits[5-9]"]


def _config(workload: str, compressor: str) -> RunConfig:
    spec = WORKLOADS[workload]
    tasks = TASKS if COMPRESSORS.get(compressor).info.kind == "multitask" else []
    return RunConfig(
        workload=workload, compressor=compressor, dataset=None if tasks else spec["dataset"], tasks=tasks,
        compressor_args=ARGS.get(compressor, {}), workload_options=spec["options"], recipe_overrides=spec["recipe"],
    )  # fmt: skip


def _apply(workload: str, compressor: str, run_dir: Path) -> tuple[CompressedModel, nn.Module, Any]:
    prepared = prepare(_config(workload, compressor))
    seed_everything(0)
    model = prepared.workload.build_model()
    reference = prepared.workload.build_model()  # a copy of the input: some compressors change theirs in place
    reference.load_state_dict(model.state_dict())
    ctx = RunContext(prepared.workload, prepared.config, run_dir, tasks=prepared.tasks)
    return prepared.compressor.apply(model, ctx), reference, prepared.workload


def _outputs(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    with torch.no_grad():
        out = model.eval()(*inputs)
    return out[0] if isinstance(out, tuple) else out


# ---- the claims of each compressor, checked on the produced model ----------------------------------------------------
def _claims_none(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    assert result.execution == "dense"
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in result.model.state_dict().items())


def _claims_dsd(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    assert result.execution == "dense" and "dense" in result.summary["execution_note"]
    phases = [row["phase"] for row in result.summary["phases"]]
    sparsity = result.summary["plan"]["sparsity"]
    if phases[-1] == "LLR":
        assert phases == ["D", "LLR"]
        return
    assert phases == ["D", "S1", "D'1"]
    # after S every pruned layer held floor(s N) zeros; after D' the model is dense again (pruned weights regrew)
    assert all(abs(value - sparsity) < 0.02 for value in result.summary["sparsity_after_last_S"].values())
    assert result.summary["phases"][-1]["sparsity"] < sparsity / 2


def _claims_taylor(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    assert result.execution == "executed"
    x = workload.example_inputs(2)
    dense, thinned = count_flops(result.variants["masked"], x)["flops"], count_flops(result.model, x)["flops"]
    assert math.isclose(result.summary["estimated_reduction"]["flops"], 1 - thinned / dense, rel_tol=1e-6)
    assert 1 - thinned / dense >= 0.2
    params = sum(p.numel() for p in result.model.parameters())
    assert params < sum(p.numel() for p in reference.parameters())  # channels really removed
    assert result.summary["thinned_vs_masked_max_abs_diff"] < 1e-4
    torch.testing.assert_close(_outputs(result.model, x), _outputs(result.variants["masked"], x), atol=1e-4, rtol=0)


def _claims_qnn(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    fake = result.variants.get("fake_quant", result.model)
    for name, row in result.summary["layers"].items():
        assert row["distinct_weight_values"] <= 2 ** row["w_bits"], name
    quant_layers = [m for m in fake.modules() if hasattr(m, "quant_weight")]
    for layer in quant_layers:
        with torch.no_grad():
            assert torch.unique(layer.quant_weight()).numel() <= 2**layer.w_bits  # a 1-bit layer has two values
    if result.execution == "executed":
        x = workload.example_inputs(16)
        assert torch.equal(_outputs(result.model, x).argmax(-1), _outputs(fake, x).argmax(-1))


def _claims_ternary(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    state = result.model.state_dict()
    ternary = [k for k, bits in result.weight_bits.items() if bits == 2.0 and k in state]
    assert ternary and all(torch.unique(state[k]).numel() <= 3 for k in ternary)


def _claims_lns(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    layers = [m for m in result.model.modules() if hasattr(m, "codes")]
    assert layers and result.summary["float_master_copy"] is False
    for layer in layers:
        assert not layer.codes.is_floating_point() and "weight" not in dict(layer.named_parameters(recurse=False))
        assert layer.codes.abs().max() < 2 ** (layer.storage.bits - 1)  # sign + (B-1)-bit exponent


def _claims_deepinversion(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    # the grid's teacher is untrained, so R_feature need not fall here (trained teachers: test_deepinversion.py)
    synthesis = result.summary["synthesis"]
    assert synthesis["images"] == 2 * 16 and synthesis["within_pixel_range"]
    ratios = [a / b for a, b in zip(synthesis["r_feature_initial"], synthesis["r_feature_final"], strict=True)]
    assert synthesis["r_feature_reduction_median"] == pytest.approx((ratios[0] + ratios[1]) / 2)
    assert synthesis["r_feature_reduction_min"] == min(ratios)
    assert 0.0 <= synthesis["teacher_target_agreement"] <= 1.0
    assert result.summary["method"] == "adi" and synthesis["adi_scale"] > 0
    student, teacher = result.model.state_dict(), result.variants["teacher"].state_dict()
    assert any(not torch.equal(v, teacher[k]) for k, v in student.items())  # a new model, not the teacher's copy
    assert {"data_free_student", "noise_student", "teacher", "real_data_student"} <= set(result.summary)


def _task_logits(model: Any, index: int, x: tuple[torch.Tensor, ...]) -> torch.Tensor:
    model.set_task(index)
    return _outputs(model, x)


def _claims_packnet(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    from compressors.continual.metrics import PROBE_BATCH, fingerprint
    from compressors.continual.packnet import expected_owned

    model, summary = result.model, result.summary
    assert result.execution == "simulated" and model.num_tasks == 2
    # zero forgetting by logits: task 1's logits now are the ones recorded right after its own training
    probe = _task_logits(model, 0, workload.example_inputs(PROBE_BATCH))
    assert fingerprint(probe) == summary["zero_forgetting"]["tasks"][0]["logits_sha256_after_own_training"]
    fractions = summary["plan"]["prune_fractions"]
    x = workload.example_inputs(4)
    for index in range(2):  # each task's model is the backbone masked by its owner set, plus its head
        assert torch.equal(model.task_model(index)(*x), _task_logits(model, index, x))
    for name, layer in model.layers.items():  # ownership exactly (1 - p1), p1 (last task unpruned)
        counts = [int((layer.owner == code).sum()) for code in range(3)]
        assert counts == [0, *expected_owned(layer.owner.numel(), fractions)], name
    bits = summary["storage"]["owner_mask"]["packed_bits_per_weight"]
    assert bits == 2 and set(result.weight_bits.values()) == {2.0}  # ceil(log2(2 + 1)) bits per weight
    assert (
        summary["storage"]["mask_bits_per_task"][summary["tasks"][0]] == bits * summary["storage"]["masked_weights"] / 2
    )
    model.set_task(0)


def _claims_piggyback(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    model, summary = result.model, result.summary
    x = workload.example_inputs(4)
    # frozen backbone: bit-identical to the input model, so task 1 gives the dense model's logits exactly
    backbone = {k.replace(".layer.", "."): v for k, v in model.shared.state_dict().items() if ".mask" not in k}
    dense = reference.state_dict()
    assert backbone and all(torch.equal(v, dense[k]) for k, v in backbone.items())
    assert torch.equal(_task_logits(model, 0, x), _outputs(reference, x))
    # 1 bit per weight for the added task, packed; the packed path equals the materialised one
    for layer in model.layers.values():
        assert layer.packed(1).dtype == torch.uint8 and layer.packed(1).numel() == -(-layer.layer.weight.numel() // 8)
    assert summary["storage"]["mask_bits_per_task"][summary["tasks"][1]] == summary["storage"]["masked_weights"]
    packed = _task_logits(model, 1, x)
    model.use_path(False)
    materialised = _task_logits(model, 1, x)
    model.use_path(True)
    assert torch.equal(packed, materialised) and summary["reload"]["identical"]
    model.set_task(0)


def _claims_unas(result: CompressedModel, reference: nn.Module, workload: Any) -> None:
    from workloads import WORKLOADS as REGISTRY

    summary, model = result.summary, result.model
    assert result.execution == "executed" and set(result.variants) == {"reference", "random_search"}
    found = summary["networks"]["found"]
    # the produced model is the found architecture, rebuilt from the record alone
    rebuilt = REGISTRY.get(found["workload"])(profile="tiny", dataset="digits", options=found["options"]).build_model()
    assert found["options"]["architecture"] == ",".join(summary["architecture"])
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rebuilt.state_dict().items()}
    params = sum(p.numel() for p in model.parameters())
    assert summary["params"] == params < sum(p.numel() for p in reference.parameters())  # smaller than the supernet
    assert summary["flops"] == count_flops(model, workload.example_inputs(1))["flops"]
    assert summary["random_search"]["evaluated"] == 2
    latency = summary["latency"]
    assert latency["target_ms"] is None and latency["found_ms"] > 0 and latency["reference_ms"] > 0


CLAIMS: dict[str, Callable[[CompressedModel, nn.Module, Any], None]] = {
    "none": _claims_none,
    "dsd": _claims_dsd,
    "llr": _claims_dsd,
    "taylor": _claims_taylor,
    "qnn": _claims_qnn,
    "ternary_rnn": _claims_ternary,
    "lns_madam": _claims_lns,
    "deepinversion": _claims_deepinversion,
    "packnet": _claims_packnet,
    "piggyback": _claims_piggyback,
    "unas": _claims_unas,
}


def test_every_registered_compressor_has_grid_settings_and_claims() -> None:
    assert set(COMPRESSORS.names()) == set(CLAIMS) == set(ARGS)


@pytest.mark.slow
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
@pytest.mark.parametrize("compressor", sorted(CLAIMS))
def test_grid(compressor: str, workload: str, tmp_path: Path) -> None:
    only = WORKLOADS[workload].get("only")
    if only and compressor != only:
        pytest.skip(f"{workload} is a search space: only {only} takes it")
    if WORKLOADS[workload]["dataset"] == "fortunes" and not FORTUNES_SYSTEM_DIR.is_dir():
        pytest.skip(f"{FORTUNES_SYSTEM_DIR} is absent (apt-get install -y fortunes)")
    try:
        prepare(_config(workload, compressor))
    except IncompatibleWorkloadError as error:
        pytest.skip(f"incompatible by capability flags: {error}")
    result, reference, wl = _apply(workload, compressor, tmp_path / "a")
    x = wl.example_inputs(4)
    out, expected = _outputs(result.model, x), _outputs(reference, x)
    assert out.shape == expected.shape and torch.isfinite(out).all()
    CLAIMS[compressor](result, reference, wl)
    again, _, _ = _apply(workload, compressor, tmp_path / "b")
    state, other = result.model.state_dict(), again.model.state_dict()
    assert state.keys() == other.keys() and all(torch.equal(v, other[k]) for k, v in state.items())  # seeded
