"""Accounting formulas (METHODOLOGY §6-8) and speedup tables on hand-computed cases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from harness.meters import accounting as acc
from harness.meters.flops import count_flops
from harness.speedup import compare


def _linear(weight: list[list[float]]) -> nn.Linear:
    layer = nn.Linear(len(weight[0]), len(weight), bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
    return layer


def test_effective_flops_unstructured_counts_density() -> None:
    model = nn.Sequential(_linear([[1, 0, 0, 0], [1, 1, 1, 0]]))  # density 4/8, row 2 breaks 2:4
    flops = count_flops(model, (torch.ones(1, 4),))
    assert flops["flops"] == 16 and flops["per_leaf_module"] == {"0": 16}  # 2 * 1 * 4 * 2
    eff = acc.effective_flops(model, flops["flops"], flops["per_leaf_module"])
    assert eff["per_layer"]["0"]["pattern"] == "unstructured"
    assert eff["effective_flops"] == pytest.approx(8.0)


def test_effective_flops_two_four_counts_half_whatever_the_density() -> None:
    model = nn.Sequential(_linear([[1, 1, 0, 0], [0, 1, 0, 0]]), nn.ReLU(), _linear([[1.0, 2.0]]))
    flops = count_flops(model, (torch.ones(1, 4),))
    assert flops["flops"] == 16 + 4
    eff = acc.effective_flops(model, flops["flops"], flops["per_leaf_module"])
    assert eff["per_layer"]["0"]["pattern"] == "2:4" and eff["per_layer"]["0"]["factor"] == 0.5
    assert eff["per_layer"]["2"]["pattern"] == "dense"
    assert eff["effective_flops"] == pytest.approx(8 + 4)


def test_lstm_flop_formula() -> None:
    flops = count_flops(nn.LSTM(8, 16, num_layers=2), (torch.randn(5, 2, 8),))
    # per layer: 2 * T*B * (4H*I + 4H*H) = 2*10*(64*8 + 64*16) + 2*10*(64*16 + 64*16)
    assert flops["flops"] == 30720 + 40960


def test_bops_only_quantized_layers() -> None:
    result = acc.bops({"fc": 16, "head": 100}, {"fc.weight": 4, "activation:fc": 8, "head.weight": 32})
    assert result["bops"] == 8 * 4 * 8  # MACs = 16 / 2
    assert result["float_reference_bops"] == 8 * 32 * 32
    assert result["ratio"] == pytest.approx(1 / 32)
    assert list(result["per_layer"]) == ["fc"]
    assert acc.bops({"fc": 16}, {"fc.weight": 2})["per_layer"]["fc"]["activation_bits"] == 32


def test_storage_formulas() -> None:
    assert acc.dense_bits(100, 32) == 3200
    assert acc.quantized_bits(100, 4, scales=2) == 100 * 4 + 2 * 32
    assert acc.csr_bytes(rows=10, nonzeros=5, element_bytes=4) == 10 * 8 + (8 + 4) * 5
    assert acc.n_m_bits(16, 16) == pytest.approx(9 / 16 * 16 * 16)  # 2:4 fp16 = 9/16 of dense
    assert acc.n_m_bits(16, 8) == pytest.approx(10 / 16 * 16 * 8)  # 2:4 int8 = 10/16 of dense
    assert acc.task_mask_bits(1000, tasks=3) == 3000


def test_tensor_bits_picks_smallest_format() -> None:
    sparse = torch.zeros(4, 4)
    sparse[0, 0] = sparse[2, 1] = 1.0
    entry = acc.tensor_bits(sparse)
    assert entry["options"]["dense"] == 512
    assert entry["options"]["csr"] == 8 * (4 * 8 + 12 * 2)
    assert entry["options"]["2:4"] == pytest.approx(8 * (32 + 2))
    assert entry["best"] == "2:4"
    scattered = torch.zeros(4, 8)
    scattered[0, :3] = 1.0  # 3 nonzeros in one group of 4: CSR but not 2:4
    entry = acc.tensor_bits(scattered)
    assert "2:4" not in entry["options"] and entry["best"] == "csr"
    assert acc.tensor_bits(torch.ones(3, 3), bits=4)["bits"] == 36


def test_theoretical_size_adds_extras() -> None:
    model = nn.Linear(4, 2)
    size = acc.theoretical_size(model, {"weight": 2, "extra:scales": 64})
    assert size["dense_bits"] == 8 * 2 + 2 * 32 + 64
    assert size["extra_bits"] == 64


def test_roofline() -> None:
    assert acc.roofline_seconds(1e9, 1e6, 1e10, 1e9) == pytest.approx(0.1)
    point = acc.roofline(1e6, 1e9, {"peak_flops_per_s": 1e10, "bandwidth_bytes_per_s": 1e9})
    assert point["bound"] == "memory" and point["seconds"] == pytest.approx(1.0)
    assert acc.ideal_speedup(2.0, 0.5) == 4.0 and acc.efficiency(2.0, 4.0) == 0.5
    masked = nn.Linear(8, 8)
    with torch.no_grad():
        masked.weight[:, :4] = 0
    assert acc.stored_weight_bytes(masked) == acc.stored_weight_bytes(nn.Linear(8, 8))  # pruned-but-dense moves all


def _measured(flops: int, effective: float, roof_s: float, samples: Path, p50: float) -> dict[str, Any]:
    return {
        "flops": {"flops": flops, "effective_flops": effective},
        "roofline": {"by_batch": {"1": {"seconds": roof_s}}},
        "backends": {
            "eager": {
                "status": "ok",
                "single_stream": {"host_latency": {"p50": p50}, "samples_path": str(samples)},
                "offline": {"sweep": [{"batch_size": 1, "latency_ms": p50}]},
            }
        },
    }


def _interleaved(ratio: float, verdict: str) -> dict[str, Any]:
    point = {"ratio": ratio, "low": ratio * 0.99, "high": ratio * 1.01, "aa_spread": 0.01, "verdict": verdict}
    return {"eager": {"status": "ok", "by_batch": {"1": point}, "stopped": None}}


def test_masked_model_has_ideal_one_and_is_never_shown_faster(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(["2.0"] * 40))
    b.write_text("\n".join(["1.0"] * 40))
    dense = _measured(100, 100, 4.0, a, 2.0)
    masked = _measured(100, 50, 4.0, b, 1.0)
    table = compare(dense, masked, _interleaved(1.3, "faster"), execution="simulated")
    assert table["execution"] == "simulated" and table["cannot_be_faster"]
    assert table["ideal_flops"] == 1.0 and table["ideal_roofline_bs1"] == 1.0
    assert table["ideal_effective_flops"] == 2.0
    eager = table["backends"]["eager"]
    point = eager["achieved"]["1"]
    assert point["verdict"] == "no difference" and point["measured_verdict"] == "faster"
    assert "faster_than_possible" in point["flags"] and eager["headline_bs1"]["verdict"] == "no difference"
    assert eager["efficiency"]["1"] == 1.3 and eager["efficiency_roofline"]["1"] == 1.3
    # the separate measurements stay, under their name, with no verdict
    separate = eager["separate_measurements"]
    assert separate["ratio_bs1_p50"] == 2.0 and separate["ratio_bs1_ci"]["low"] == 2.0
    assert "verdict" not in separate["ratio_bs1_ci"] and separate["ratio_offline_by_batch"] == {"1": 2.0}


def test_thinned_model_can_be_faster_and_missing_interleaving_is_no_headline(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("\n".join(["2.0"] * 40))
    b.write_text("\n".join(["1.0"] * 40))
    dense, thinned = _measured(100, 100, 4.0, a, 2.0), _measured(50, 50, 2.0, b, 1.0)
    table = compare(dense, thinned, _interleaved(1.8, "faster"), execution="executed")
    eager = table["backends"]["eager"]
    assert not table["cannot_be_faster"] and eager["headline_bs1"]["verdict"] == "faster"
    assert eager["efficiency"]["1"] == 0.9 and "measured_verdict" not in eager["achieved"]["1"]
    alone = compare(dense, thinned, None, execution="executed")["backends"]["eager"]
    assert alone["status"] == "skipped" and alone["headline_bs1"] is None and alone["achieved"] == {}


def test_accuracy_at_chance_is_flagged() -> None:
    from types import SimpleNamespace

    from harness.quality import chance_flags

    workload = SimpleNamespace(num_classes=10, info=SimpleNamespace(metric="top1"))
    measured = {"baseline": {"accuracy": {"top1": 92.0}}, "compressed": {"accuracy": {"top1": 10.4}}}
    assert chance_flags(workload, measured) == {"chance_percent": 10.0, "flags": ["compressed_at_chance"]}
    perplexity = SimpleNamespace(num_classes=None, info=SimpleNamespace(metric="perplexity"))
    assert chance_flags(perplexity, measured)["flags"] == []
