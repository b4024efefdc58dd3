"""QNN compressor (arXiv 1609.07061): config, model conversion, allowed values, clipping, shift BN / AdaMax, and
the executed (packed-kernel) model agreeing with its fake-quant version."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compressors import COMPRESSORS
from compressors.qnn import ClipWeights, QNNConfig, is_fully_binary, layer_weight_bits, quantize_model, to_executed
from compressors.qnn_layers import (
    PackedBinaryConv2d,
    PackedBinaryLinear,
    QuantConv2d,
    QuantLinear,
    ShiftAdaMax,
    ShiftBatchNorm,
)
from compressors.quant import linear_quant
from workloads.mlp import QnnMLP


def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 2 * 2, 10),
    )  # fmt: skip


def warm_bn(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """One training-mode forward so BatchNorm running statistics are not the identity."""
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


def test_config_from_strings_and_json_round_trip() -> None:
    cfg = QNNConfig.from_strings({"w_bits": "1", "a_bits": "2", "stochastic_weights": "true", "g_bits": "6"})
    assert (cfg.w_bits, cfg.a_bits, cfg.stochastic_weights, cfg.stochastic_activations, cfg.g_bits) == (
        1,
        2,
        True,
        False,
        6,
    )
    assert QNNConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    # version 1 records were converted without bn_before_activation: refused rather than rerun differently
    with pytest.raises(ValueError, match="version 1 cannot be loaded by version 3"):
        QNNConfig.from_dict({**cfg.to_dict(), "version": 1})
    with pytest.raises(ValueError, match="version 2 cannot be loaded by version 3"):  # one 'stochastic' flag then
        QNNConfig.from_dict({**cfg.to_dict(), "version": 2})


@pytest.mark.parametrize("bad", [{"w_bits": 0}, {"a_bits": 33}, {"g_bits": 1}, {"weight_quant": "cube"}])
def test_config_rejects_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        QNNConfig(**bad)  # type: ignore[arg-type]


def test_registered_lazily() -> None:
    assert COMPRESSORS.get("qnn").info.paper == "1609.07061"


def test_quantize_model_replaces_layers_relu_and_adds_output_bn() -> None:
    model = quantize_model(small_cnn(), QNNConfig())
    quant = [m for m in model.modules() if isinstance(m, (QuantLinear, QuantConv2d))]
    assert [m.first for m in quant] == [True, False, False]
    assert not any(isinstance(m, nn.ReLU) for m in model.modules())
    assert isinstance(model[8], nn.Sequential) and isinstance(model[8][1], nn.BatchNorm1d)
    mlp = quantize_model(QnnMLP(10, 16, 32, 1), QNNConfig())  # already ends in BatchNorm: nothing added
    assert isinstance(mlp.layers[6], QuantLinear) and isinstance(mlp.layers[7], nn.BatchNorm1d)


def _relu_then_bn_cnn() -> nn.Sequential:
    """AlexNetOWT_BN's conv2-5 pattern: conv -> pool -> ReLU -> BN, with trained-like BN statistics (var 0.05)."""
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.MaxPool2d(2), nn.ReLU(), nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 3), nn.ReLU(), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 3 * 3, 3),
    )  # fmt: skip
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.fill_(0.05)
    return model


def _inputs_of_quantized_layers(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    handles = [m.register_forward_pre_hook(lambda _m, args: seen.append(args[0])) for m in model.modules()
               if isinstance(m, (QuantLinear, QuantConv2d)) and not m.first]  # fmt: skip
    model.eval()(x)
    for h in handles:
        h.remove()
    return seen


def test_bn_moves_before_the_activation_like_the_authors_binary_alexnet() -> None:
    torch.manual_seed(0)
    float_model = _relu_then_bn_cnn()
    bns = [m for m in float_model.modules() if isinstance(m, nn.BatchNorm2d)]
    model = quantize_model(float_model, QNNConfig(w_bits=1, a_bits=2))
    kinds = [type(m).__name__ for m in model]
    assert kinds[:7] == [
        "QuantConv2d",
        "MaxPool2d",
        "BatchNorm2d",
        "Hardtanh",
        "QuantConv2d",
        "BatchNorm2d",
        "Hardtanh",
    ]
    assert model[2] is bns[0] and model[5] is bns[1]  # the same BN objects (trained statistics kept)
    x = torch.randn(8, 1, 12, 12) * 4
    assert all(t.abs().max() <= 1 for t in _inputs_of_quantized_layers(model, x))
    kept = quantize_model(_relu_then_bn_cnn(), QNNConfig(w_bits=1, a_bits=2, bn_before_activation=False))
    assert [type(m).__name__ for m in kept][2:4] == ["Hardtanh", "BatchNorm2d"]
    assert any(t.abs().max() > 1 for t in _inputs_of_quantized_layers(kept, x))


def test_real_weights_clipped_and_quantized_weights_binary() -> None:
    linear = nn.Linear(4, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[2.0, -0.0, 0.0, -3.0], [0.5, -0.5, 1.0, -1.0], [0.1, 0.2, -0.3, 0.4]]))
    model = quantize_model(nn.Sequential(linear), QNNConfig())
    layer = model[0][0]
    assert float(layer.weight.detach().abs().max()) == 1.0
    assert torch.equal(layer.quant_weight()[0], torch.tensor([1.0, 1.0, 1.0, -1.0]))  # sign(0) = sign(-0) = +1


@pytest.mark.parametrize(
    "w_bits,weight_quant,allowed",
    [(1, "linear", {-1.0, 1.0}), (2, "linear", {-1.0, -0.5, 0.0, 0.5}),
     (3, "log", {s * m for s in (-1, 1) for m in (1.0, 0.5, 0.25, 0.125)})],
)  # fmt: skip
def test_weights_take_only_allowed_values(w_bits: int, weight_quant: str, allowed: set[float]) -> None:
    torch.manual_seed(0)
    model = quantize_model(small_cnn(), QNNConfig(w_bits=w_bits, weight_quant=weight_quant))
    for m in model.modules():
        if isinstance(m, (QuantLinear, QuantConv2d)):
            assert set(m.quant_weight().unique().tolist()) <= allowed


def test_k_bit_activation_quantization_in_forward() -> None:
    torch.manual_seed(0)
    model = quantize_model(nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3)), QNNConfig(w_bits=2, a_bits=2))
    model.eval()
    x = torch.randn(6, 4)
    second = model[1][0] if isinstance(model[1], nn.Sequential) else model[1]
    expected = F.linear(linear_quant(x, 2), linear_quant(second.weight, 2)) + second.bias
    assert torch.equal(second(x), expected)


def test_stochastic_binarization_only_in_training() -> None:
    torch.manual_seed(0)
    layer = quantize_model(nn.Sequential(nn.Linear(50, 40)), QNNConfig(stochastic_weights=True))[0][0]
    layer.train()
    a, b = layer.quant_weight(), layer.quant_weight()
    assert set(a.unique().tolist()) == {-1.0, 1.0} and not torch.equal(a, b)
    x = torch.rand(4, 50) * 2 - 1
    assert torch.equal(layer.quant_input(x), layer.quant_input(x))  # input is the first layer's fixed point anyway
    layer.eval()
    assert torch.equal(layer.quant_weight(), torch.where(layer.weight >= 0, 1.0, -1.0))


def test_weight_gradient_uses_ste_cancel() -> None:
    layer = quantize_model(nn.Sequential(nn.Linear(2, 1, bias=False), nn.Linear(1, 1)), QNNConfig())[0]
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[1.0, 0.3]]))
        layer.weight[0, 0] = 1.5  # outside [-1, 1]: gradient cancelled
    x = torch.tensor([[2.0, 3.0]])
    layer(x).sum().backward()
    # first layer: input rounded to fixed point (2, 3 exact); d/dw_b = x; STE passes where |w| <= 1
    assert torch.equal(layer.weight.grad, torch.tensor([[0.0, 3.0]]))


def test_clip_callback_and_gradient_quantization() -> None:
    model = quantize_model(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2)), QNNConfig())
    layer = model[0]
    layer.weight.grad = torch.tensor([[0.3, -5.0, 0.0], [1.0, 2.0, 3.0]])
    with torch.no_grad():
        layer.weight.mul_(100)
    callback = ClipWeights(g_bits=4)
    callback.after_backward(None, model)  # type: ignore[arg-type]
    callback.after_step(None, model)  # type: ignore[arg-type]
    assert float(layer.weight.detach().abs().max()) <= 1.0
    # e_max = round(log2 5) = 2; 4 bits: exponents -5..2
    assert torch.equal(layer.weight.grad, torch.tensor([[0.25, -4.0, 0.0], [1.0, 2.0, 4.0]]))


def test_shift_batchnorm_hand_computed() -> None:
    bn = ShiftBatchNorm(1, eps=0.0, momentum=0.5)
    with torch.no_grad():
        bn.weight.fill_(3.0)  # AP2(3) = 4
        bn.bias.fill_(0.5)
    x = torch.tensor([[1.0], [3.0], [5.0], [7.0]])  # mean 4, C = -3, -1, 1, 3
    # var = mean(C * AP2(C)) = mean(3*4, 1, 1, 3*4) = 6.5; AP2(1/sqrt(6.5) = 0.392) = 0.5
    out = bn(x)
    assert torch.allclose(out, torch.tensor([[-3.0 * 0.5 * 4 + 0.5], [-1.5], [2.5], [6.5]]))
    assert torch.allclose(bn.running_mean, torch.tensor([2.0])) and torch.allclose(bn.running_var, torch.tensor([3.75]))


def test_shift_adamax_one_step_hand_computed() -> None:
    p = nn.Parameter(torch.tensor([1.0, -1.0]))
    opt = ShiftAdaMax([p], lr=0.01, betas=(0.9, 0.999), eps=0.0)
    p.grad = torch.tensor([0.5, -0.25])
    opt.step()
    # m = 0.1 g; v = |g|; rate = AP2(0.01 / 0.1) = AP2(0.1) = 2^-3; step = rate * m * AP2(1/|g|) = 2^-3 * 0.1 * sign(g)
    assert torch.allclose(p.detach(), torch.tensor([1.0 - 0.0125, -1.0 + 0.0125]))


def test_executed_mlp_equals_fake_quant_bit_exact() -> None:
    torch.manual_seed(0)
    x = torch.randn(16, 1, 10, 10) * 1.5
    model = warm_bn(quantize_model(QnnMLP(10, 100, 130, 2), QNNConfig()), x)
    assert is_fully_binary(model)
    executed = to_executed(model)
    assert sum(isinstance(m, PackedBinaryLinear) for m in executed.modules()) == 3
    assert not any(isinstance(m, QuantLinear) for m in executed.modules())
    with torch.no_grad():
        assert torch.equal(executed(x), model(x))


def test_executed_cnn_equals_fake_quant_bit_exact() -> None:
    torch.manual_seed(1)
    x = torch.randn(8, 3, 9, 9)
    model = warm_bn(quantize_model(small_cnn(), QNNConfig()), x)
    executed = to_executed(model)
    assert sum(isinstance(m, PackedBinaryConv2d) for m in executed.modules()) == 2
    with torch.no_grad():
        out, ref = executed(x), model(x)
    assert torch.equal(out, ref) and torch.equal(out.argmax(1), ref.argmax(1))


def test_packed_weights_are_32x_smaller() -> None:
    model = quantize_model(nn.Sequential(nn.Linear(256, 64), nn.Linear(256, 64)), QNNConfig()).eval()
    packed = to_executed(model)[1][0]
    assert packed.packed_weight.dtype == torch.int64 and packed.packed_weight.numel() * 64 == 256 * 64
    fp32_bytes = 256 * 64 * 4
    assert fp32_bytes / (packed.packed_weight.numel() * 8) == 32.0


def test_non_binary_models_are_not_fully_binary_and_weight_bits_listed() -> None:
    model = quantize_model(small_cnn(), QNNConfig(w_bits=1, a_bits=2))
    assert not is_fully_binary(model)
    bits = layer_weight_bits(model)
    assert bits == {"0.weight": 1.0, "3.weight": 1.0, "8.0.weight": 1.0, "activation:0": 8.0, "activation:3": 2.0,
                    "activation:8.0": 2.0}  # fmt: skip
    assert {k for k in bits if not k.startswith("activation:")} <= set(model.state_dict())


def _context(tmp_path: Path, **args: str):  # type: ignore[no-untyped-def]
    from harness.config import RunConfig
    from harness.context import RunContext
    from workloads.mlp import MLPWorkload

    overrides = {"epochs": 1, "max_train_samples": 400, "max_val_samples": 200}
    workload = MLPWorkload(profile="tiny", dataset="digits", options={"hidden": 64}, recipe_overrides=overrides)
    config = RunConfig(workload="mlp", compressor="qnn", dataset="digits", compressor_args=args)
    return RunContext(workload=workload, config=config, run_dir=tmp_path), workload


def test_apply_returns_executed_model_for_binary_and_simulated_otherwise(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ctx, workload = _context(tmp_path)
    qnn = COMPRESSORS.get("qnn")
    result = qnn(QNNConfig(epochs=1)).apply(workload.build_model(), ctx)
    assert result.execution == "executed"
    assert "fake_quant" in result.variants
    assert all(result.summary["layers"][n]["distinct_weight_values"] <= 2 for n in result.summary["layers"])
    packed = {k for k in result.weight_bits if k.endswith(".packed_weight")}
    assert packed and packed <= set(result.model.state_dict())
    assert all(result.weight_bits[k] == 64.0 for k in packed)
    assert result.weight_bits["activation:layers.2"] == 8.0 and result.weight_bits["activation:layers.6"] == 1.0
    x = workload.example_inputs(32)[0]
    with torch.no_grad():
        assert torch.equal(result.model(x).argmax(1), result.variants["fake_quant"](x).argmax(1))
    simulated = qnn(QNNConfig(epochs=1, a_bits=2)).apply(workload.build_model(), ctx)
    assert simulated.execution == "simulated" and not simulated.variants
    assert {v for k, v in simulated.weight_bits.items() if k.endswith(".weight")} == {1.0}


def test_constant_binary_inputs_are_detected() -> None:
    from compressors.qnn import constant_input_layers

    class FunctionalRelu(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(4, 8), nn.Linear(8, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(F.relu(self.fc1(x)))

    model = quantize_model(FunctionalRelu(), QNNConfig())
    assert constant_input_layers(model, (torch.randn(16, 4),)) == ["fc2.0"]
    assert constant_input_layers(quantize_model(small_cnn(), QNNConfig()), (torch.randn(4, 3, 8, 8),)) == []


def test_weight_and_activation_stochastic_flags_are_separate() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    quantized = quantize_model(model, QNNConfig(stochastic_activations=True)).train()
    second = [m for m in quantized.modules() if hasattr(m, "quant_input") and not m.first][0]
    x = torch.rand(64, 8) * 2 - 1
    assert not torch.equal(second.quant_input(x), second.quant_input(x))  # stochastic activations
    assert torch.equal(second.quant_weight(), second.quant_weight())  # deterministic weights


def test_qnn_refuses_a_cnn_without_batchnorm_before_training() -> None:
    from harness.config import RunConfig
    from harness.runner import prepare

    with pytest.raises(ValueError, match="needs BatchNorm.*require_bn=false"):
        prepare(RunConfig(workload="lenet3", compressor="qnn"))
    prepare(RunConfig(workload="lenet3", compressor="qnn", compressor_args={"require_bn": "false"}))
    prepare(RunConfig(workload="lenet3", compressor="qnn", compressor_args={"a_bits": "32"}))  # weights only
    prepare(RunConfig(workload="mlp", compressor="qnn"))
