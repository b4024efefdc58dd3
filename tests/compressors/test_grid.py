"""One grid over every registered compressor x every small workload (DESIGN.md, Tests): the compressor runs its whole
``apply`` lifecycle (training phases included) on a shrunk real workload, and the test checks that the model's
outputs are finite and keep their shape, that the summary's claims are true of the produced model, and that two runs
with the same seed give the same model.

Workloads (real builders with explicit, small knobs): ``lenet3`` (cnn) and ``mlp`` (mlp) on the embedded digits,
``lstm_char`` (rnn) on the Debian fortunes corpus (skipped where absent). Pairs whose kinds do not fit are skipped
with the compressor's own incompatibility message. Transformer (``bert``: its tiny profile is the 22M-parameter
pretrained MiniLM) and speech (``deepspeech2``: synthesized audio) workloads have no seconds-scale variant; their
compressors' paths are covered by tests/workloads/test_bert.py and test_deepspeech2.py.
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
}


def _config(workload: str, compressor: str) -> RunConfig:
    spec = WORKLOADS[workload]
    return RunConfig(
        workload=workload, compressor=compressor, dataset=spec["dataset"], compressor_args=ARGS.get(compressor, {}),
        workload_options=spec["options"], recipe_overrides=spec["recipe"],
    )  # fmt: skip


def _apply(workload: str, compressor: str, run_dir: Path) -> tuple[CompressedModel, nn.Module, Any]:
    prepared = prepare(_config(workload, compressor))
    seed_everything(0)
    model = prepared.workload.build_model()
    reference = prepared.workload.build_model()  # a copy of the input: some compressors change theirs in place
    reference.load_state_dict(model.state_dict())
    ctx = RunContext(prepared.workload, prepared.config, run_dir)
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
    ratios = sorted(a / b for a, b in zip(synthesis["r_feature_initial"], synthesis["r_feature_final"], strict=True))
    assert synthesis["r_feature_reduction_median"] == ratios[len(ratios) // 2]
    assert 0.0 <= synthesis["teacher_target_agreement"] <= 1.0
    assert result.summary["method"] == "adi" and synthesis["adi_scale"] > 0
    student, teacher = result.model.state_dict(), result.variants["teacher"].state_dict()
    assert any(not torch.equal(v, teacher[k]) for k, v in student.items())  # a new model, not the teacher's copy
    assert {"data_free_student", "noise_student", "teacher", "real_data_student"} <= set(result.summary)


CLAIMS: dict[str, Callable[[CompressedModel, nn.Module, Any], None]] = {
    "none": _claims_none,
    "dsd": _claims_dsd,
    "llr": _claims_dsd,
    "taylor": _claims_taylor,
    "qnn": _claims_qnn,
    "ternary_rnn": _claims_ternary,
    "lns_madam": _claims_lns,
    "deepinversion": _claims_deepinversion,
}


def test_every_registered_compressor_has_grid_settings_and_claims() -> None:
    assert set(COMPRESSORS.names()) == set(CLAIMS) == set(ARGS)


@pytest.mark.slow
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
@pytest.mark.parametrize("compressor", sorted(CLAIMS))
def test_grid(compressor: str, workload: str, tmp_path: Path) -> None:
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
