"""LNS-Madam quantized training (arXiv 2106.13914): integer-only weight storage, the code-domain update, quantized
gradients, the compressor lifecycle, and the datapath energy estimate on a hand-counted model."""

from __future__ import annotations

import gc
import json
import weakref
from collections.abc import Iterable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compressors.lns import NumberFormat, lns_exponent
from compressors.lns_energy import estimate_training_energy, int_add, int_mul
from compressors.lns_madam import LNSMadamCompressor, LNSMadamConfig, QuantizedLayer, quantize_model
from compressors.madam import QuantizedWeightOptimizer
from harness.config import RunConfig
from harness.context import RunContext
from workloads.base import Recipe, Workload, WorkloadInfo


def _data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=gen)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).long()


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(12, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))


def _train(method: str, steps: int, **cfg: Any) -> tuple[nn.Module, dict[str, QuantizedLayer], list[float], Any]:
    model = _mlp()
    config = LNSMadamConfig(method=method, **cfg)
    layers = quantize_model(model, config.spec())
    lr = {"lns_madam": 1 / config.spec().storage.gamma, "sgd": 0.05, "adam": 1e-3}[method]
    opt = QuantizedWeightOptimizer(list(layers.values()), list(model.parameters()), method=method, lr=lr)
    x, y = _data()
    losses = []
    for step in range(steps):
        idx = torch.arange(step * 32, step * 32 + 32) % len(x)
        loss = F.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return model, layers, losses, opt


def test_layers_hold_only_integer_codes_and_no_float_master_copy_exists() -> None:
    model, layers, _, opt = _train("lns_madam", steps=5)
    assert set(layers) == {"0", "3"}
    for layer in layers.values():
        assert layer.live_weight is None  # the transient float weight was dropped by the optimizer step
        assert not hasattr(layer, "weight") and all(p.dim() == 1 for p in layer.parameters())  # biases only
        assert layer.codes.dtype == torch.int16 and tuple(layer.codes.shape) == layer.weight_shape
        assert set(opt.state[layer.codes]) == {"step", "exp_avg_sq"}  # optimizer state: second moment only
    # the float weight materialised for the next forward is freed as soon as the step is done: nothing keeps it
    x, y = _data(32)
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    refs = [weakref.ref(layer.live_weight) for layer in layers.values()]
    assert all(ref() is not None for ref in refs)
    del loss
    opt.step()
    gc.collect()
    assert all(ref() is None for ref in refs), "a float copy of the quantized weight survived the step"
    state = model.state_dict()
    assert state["0.codes"].dtype == torch.int16 and "0.weight" not in state


def test_lns_madam_step_on_codes_matches_hand_computation() -> None:
    model = nn.Sequential(nn.Linear(3, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.5, -0.25, 1.0], [-1.0, 0.125, 0.5]]))
    layers = quantize_model(model, LNSMadamConfig().spec())
    layer = layers["0"]
    before = layer.codes.clone()
    opt = QuantizedWeightOptimizer([layer], [], method="lns_madam", lr=1 / 8, update_rounding="nearest")
    x = torch.tensor([[1.0, 2.0, -1.0]])
    model(x).sum().backward()  # dL/dW = ones(2, 1) x  -> sign(grad) = [1, 1, -1] in each row
    opt.step()
    # step 1: g^ = sign(g); log2|w| -= (1/8) * g^ * sign(w)  <=>  code k -= 8 * (1/8) * sign(g) * sign(w)
    sign_g = torch.tensor([[1, 1, -1], [1, 1, -1]])
    expected_k = (before.abs() - sign_g * torch.sign(before)).clamp(1, 127)
    assert torch.equal(layer.codes.abs(), expected_k.to(torch.int16))
    assert torch.equal(torch.sign(layer.codes), torch.sign(before))


def test_gradients_and_activations_are_on_the_lns_grid() -> None:
    model = _mlp()
    layers = quantize_model(model, LNSMadamConfig(grad_bits=5, grad_gamma=1.0).spec())
    x, y = _data(64)
    seen: list[torch.Tensor] = []
    layers["3"].register_forward_pre_hook(lambda mod, args: seen.append(mod.quantize_input(args[0]).detach()))
    F.cross_entropy(model(x), y).backward()
    grad = layers["0"].live_weight.grad
    nonzero = grad[grad != 0]
    exps = lns_exponent(nonzero, grad.abs().max(), 1.0)
    assert torch.allclose(exps, exps.round(), atol=1e-4) and float(exps.min()) >= -14 - 1e-4  # 5 bits: 15 levels
    act = seen[0][seen[0] != 0]
    exps = lns_exponent(act, act.abs().max(), 8.0)
    assert torch.allclose(exps, exps.round(), atol=1e-3)


def test_trainer_gradient_clipping_reaches_the_decoded_lns_weights() -> None:
    from harness.train import clipped_tensors

    model = _mlp()
    layers = quantize_model(model, LNSMadamConfig().spec())
    x, y = _data(64)
    (100.0 * F.cross_entropy(model.train()(x), y)).backward()  # a large gradient
    live = [layers[name].live_weight for name in ("0", "3")]
    tensors = clipped_tensors(model)
    assert all(any(t is w for t in tensors) for w in live)  # the tensors the LNS update reads the gradient of
    torch.nn.utils.clip_grad_norm_(tensors, 1.0)
    total = torch.sqrt(sum(t.grad.pow(2).sum() for t in tensors if t.grad is not None))
    assert float(total) == pytest.approx(1.0, rel=1e-4)
    assert float(torch.sqrt(sum(w.grad.pow(2).sum() for w in live))) <= 1.0 + 1e-4


@pytest.mark.parametrize("method", ["lns_madam", "sgd", "adam"])
def test_each_method_trains_the_8_bit_lns_model(method: str) -> None:
    _, _, losses, _ = _train(method, steps=60)
    assert sum(losses[-10:]) / 10 < 0.75 * sum(losses[:5]) / 5


def test_fixed_and_float_formats_train_with_sgd_and_reject_lns_madam() -> None:
    model, layers, losses, _ = _train("sgd", steps=30, number_format="fixed")
    assert layers["0"].storage == NumberFormat("fixed", 8, 8.0) and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="number_format=lns"):
        LNSMadamConfig(method="lns_madam", number_format="float")


def test_config_round_trips_through_json_and_strings() -> None:
    cfg = LNSMadamConfig(method="adam", bits=6, gamma=4.0, weight_bits=6, grad_bits=5, grad_gamma=1.0)
    again = LNSMadamConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    parsed = LNSMadamConfig.from_strings({"grad_bits": "5", "lr": "none", "per_channel": "true"})
    assert parsed.grad_bits == 5 and parsed.lr is None and parsed.per_channel is True
    # version 1 meant lr=None -> 1/weight_gamma with nearest update rounding: such a record is refused, not rerun
    with pytest.raises(ValueError, match="version 1 cannot be loaded by version 2"):
        LNSMadamConfig.from_dict({**cfg.to_dict(), "version": 1})


def test_energy_estimate_on_a_hand_counted_model() -> None:
    model = nn.Sequential(nn.Linear(4, 3, bias=False))  # 12 MACs per sample, reduction length K = 4, 3 outputs
    quantize_model(model, LNSMadamConfig().spec())
    fmt = NumberFormat("lns", 8, 8.0)
    out = estimate_training_energy(model, (torch.randn(1, 4),), fmt, fmt, samples=10)
    assert out["kind"] == "estimated" and out["forward_macs_per_sample"] == 12 and out["training_macs"] == 360
    # LNS MAC: 7-bit exponent add (0.03 * 7/8) + shift and accumulate at 24 bits (2 x 0.075) = 0.17625 pJ
    assert int_add(7) == pytest.approx(0.02625) and int_add(24) == pytest.approx(0.075)
    mac = 0.02625 + 2 * 0.075
    # per output: gamma = 8 constant multiplies (0.2 * 3^(log 15.5 / log 4) = 1.75538 pJ) + adds at 24 bits
    assert int_mul(24) == pytest.approx(1.75538, rel=1e-4)
    per_output = 8 * (1.75538 + 0.075)
    expected_pj = 10 * (12 * 3 * mac + 3 * 3 * per_output)
    assert out["joules"] == pytest.approx(expected_pj * 1e-12, rel=1e-4)
    assert out["fp32_joules"] == pytest.approx(10 * 36 * (3.7 + 0.9) * 1e-12)
    assert out["reduction_vs_fp32"] == pytest.approx(1 - expected_pj / (10 * 36 * 4.6), rel=1e-3)


class _LinearThenGram(nn.Module):
    """A quantized Linear (12 MACs) followed by an unquantized activation-by-activation product (3x3 Gram: 9 MACs)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        return h.transpose(-1, -2) @ h


def test_energy_estimate_prices_unquantized_matmuls_at_fp32() -> None:
    model = _LinearThenGram()
    quantize_model(model, LNSMadamConfig().spec())
    fmt = NumberFormat("lns", 8, 8.0)
    out = estimate_training_energy(model, (torch.randn(1, 4),), fmt, fmt, samples=10, quantized_layers=["fc"])
    assert out["forward_macs_per_sample"] == 21 and out["float_macs_per_sample"] == 9
    lns_part = 10 * (12 * 3 * (0.02625 + 2 * 0.075) + 3 * 3 * 8 * (1.75538 + 0.075))
    assert out["joules"] == pytest.approx((lns_part + 10 * 3 * 9 * 4.6) * 1e-12, rel=1e-4)
    # FP8 and INT8 columns price the same 9 MACs at FP32 too; nothing quantized means no saving at all
    nothing = estimate_training_energy(model, (torch.randn(1, 4),), fmt, fmt, samples=10, quantized_layers=[])
    assert nothing["joules"] == pytest.approx(nothing["fp32_joules"]) == pytest.approx(nothing["fp8_joules"])


class _TinyWorkload(Workload):
    info = WorkloadInfo(
        name="tiny_mlp",
        paper="-",
        task="image-classification",
        metric="top1",
        higher_is_better=True,
        datasets=("random",),
        default_dataset="random",
        kind="mlp",
    )
    recipes = {"tiny": Recipe(epochs=2, batch_size=32, optimizer="sgd", lr=0.05, schedule="cosine")}

    def build_model(self) -> nn.Module:
        return _mlp()

    def dataloader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        x, y = _data(256, seed=0 if split == "train" else 1)
        return DataLoader(TensorDataset(x, y), batch_size=batch_size or 32, shuffle=False)

    def example_inputs(self, batch_size: int, device: Any = "cpu", offset: int = 0) -> tuple[torch.Tensor, ...]:
        return (_data(batch_size, seed=offset + 2)[0],)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        return F.cross_entropy(model(batch[0]), batch[1])

    def evaluate(self, model: nn.Module, loader: Iterable, device: Any) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            hits = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
        model.train()
        return {"top1": 100.0 * hits / 256}


def test_compressor_apply_trains_from_scratch_and_reports(tmp_path: Any) -> None:
    workload = _TinyWorkload()
    ctx = RunContext(workload, RunConfig(workload="tiny_mlp", compressor="lns_madam"), tmp_path)
    torch.manual_seed(0)
    config = LNSMadamConfig(epochs=2, lr=1 / 8)  # 16 steps: one code per unit of round(g^), not the public 1/128
    result = LNSMadamCompressor(config).apply(workload.build_model(), ctx)
    assert result.execution == "simulated"
    summary = result.summary
    assert summary["float_master_copy"] is False and summary["quantized_layers"] == 2
    assert summary["formats"]["weights_stored"].startswith("LNS8")
    assert summary["energy"]["kind"] == "estimated" and 0 < summary["energy"]["reduction_vs_fp32"] < 1
    assert result.weight_bits == {"0.codes": 8.0, "3.codes": 8.0}
    assert ctx.evaluate(result.model)["top1"] > 70.0
    assert all(b.dtype != torch.float32 for n, b in result.model.named_buffers() if n.endswith("codes"))
