"""Tests of the low-precision RNN quantizers (Ott et al., arXiv 1608.06902) and the ``ternary_rnn`` compressor.

Expected values are hand-computed from the rules in ``compressors/rnn_quantizers.py`` (official
ottj/QuantizedRNN ``regularization.py``). Inputs at thresholds use binary-exact floats so the tie rule is tested.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from compressors import COMPRESSORS
from compressors.base import IncompatibleWorkloadError
from compressors.rnn_quantizers import (
    binarize,
    exp_quantize,
    exponent_bits,
    pow2_ternarize,
    storage_bits,
    ternarize,
)
from compressors.ternary_rnn import (
    ClipRealWeights,
    TernaryRNN,
    TernaryRNNConfig,
    WeightQuantizer,
    attach_quantizers,
    bake_quantizers,
    cost_report,
    plan_targets,
    storage_report,
    values_allowed,
)
from harness.config import RunConfig
from harness.context import RunContext
from harness.meters.size import parameter_stats
from workloads.base import Recipe, Workload, WorkloadInfo

N = 200_000  # samples for the unbiasedness checks; 5-sigma bounds below


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# ---- quantizer rules, hand-computed --------------------------------------------------------------------------------
def test_binarize_deterministic_sign_convention() -> None:
    # p = clip((w/H+1)/2, 0, 1) rounded half away from zero: w = 0 -> p = 0.5 -> +H
    got = binarize(t(-2.0, -0.5, -1e-6, 0.0, 0.3, 1.5), h=1.0, stochastic=False)
    assert torch.equal(got, t(-1.0, -1.0, -1.0, 1.0, 1.0, 1.0))
    assert torch.equal(binarize(t(-0.1, 0.0, 0.1), h=0.25, stochastic=False), t(-0.25, 0.25, 0.25))


def test_ternarize_deterministic_thresholds_and_ties() -> None:
    # W0 = 0.5: +W0 above 0.25, -W0 at or below -0.25, 0 in between (a tie at +0.25 gives 0, at -0.25 gives -W0)
    w = t(-0.9, -0.25, -0.2, 0.0, 0.2, 0.25, 0.2500001, 0.9)
    assert torch.equal(ternarize(w, 0.5, stochastic=False), t(-0.5, -0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5))


def test_pow2_ternarize_levels_and_ties() -> None:
    # f = 1 (official dual-copy default): clip(round(2w), -1, 1)/2, ties away from zero
    w = t(-0.8, -0.25, -0.2, 0.0, 0.2, 0.25, 0.7)
    assert torch.equal(pow2_ternarize(w, 1), t(-0.5, -0.5, 0.0, 0.0, 0.0, 0.5, 0.5))
    # f = 3: level 1/8, threshold 1/16
    assert torch.equal(pow2_ternarize(t(-0.0625, 0.05, 0.0625, 2.0), 3), t(-0.125, 0.0, 0.125, 0.125))


def test_exp_quantize_deterministic_hand_values() -> None:
    # 0.3: k = floor(log2 .3) = -2, p_up = .3/.25 - 1 = .2 -> .25;  0.4: p_up = .6 -> .5;  0.375: p_up = .5 (tie,
    # not > .5) -> .25;  -0.75: k = -1, p_up = .5 -> -.5;  1.0: k = 0, p_up = 0 -> 1;  5000: k clipped to 9,
    # p_up clipped to 1 -> 2^10;  0: k clipped to -22, sign(0) = -1 -> -2^-22
    got = exp_quantize(t(0.3, 0.4, 0.375, -0.75, 1.0, 5000.0, 0.0), stochastic=False)
    assert torch.equal(got, t(0.25, 0.5, 0.25, -0.5, 1.0, 1024.0, -(2.0**-22)))


def test_stochastic_zero_and_saturation() -> None:
    torch.manual_seed(0)
    assert torch.equal(ternarize(torch.zeros(1000), 0.5, stochastic=True), torch.zeros(1000))
    assert torch.equal(ternarize(torch.full((1000,), -0.7), 0.5, stochastic=True), torch.full((1000,), -0.5))
    assert torch.equal(binarize(torch.full((1000,), 3.0), 1.0, stochastic=True), torch.ones(1000))


@pytest.mark.parametrize(
    ("fn", "w", "spread"),
    [
        (lambda x: binarize(x, 1.0, stochastic=True), 0.4, 1.0),
        (lambda x: binarize(x, 1.0, stochastic=True), -0.7, 1.0),
        (lambda x: ternarize(x, 0.5, stochastic=True), 0.15, 0.5),
        (lambda x: ternarize(x, 0.5, stochastic=True), -0.4, 0.5),
        (lambda x: exp_quantize(x, stochastic=True), 0.3, 0.25),
        (lambda x: exp_quantize(x, stochastic=True), -0.09, 0.0625),
    ],
)
def test_stochastic_quantizers_are_unbiased(fn: Any, w: float, spread: float) -> None:
    torch.manual_seed(1234)
    samples = fn(torch.full((N,), w))
    tolerance = 5.0 * spread / math.sqrt(N)  # std of one sample <= spread (distance between the two levels)
    assert abs(samples.mean().item() - w) < tolerance
    assert samples.unique().numel() == 2  # only the two neighbouring levels


# ---- gradient and train/eval behaviour ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "stochastic"),
    [
        ("binary", False),
        ("binary", True),
        ("ternary", False),
        ("ternary", True),
        ("pow2_ternary", False),
        ("exponential", False),
        ("exponential", True),
    ],
)
def test_gradient_passes_through_unchanged(method: str, stochastic: bool) -> None:
    torch.manual_seed(0)
    w = torch.randn(50, requires_grad=True)
    upstream = torch.randn(50)
    q = WeightQuantizer(method, stochastic, level=0.5).train()(w)
    (q * upstream).sum().backward()
    assert torch.equal(w.grad, upstream)
    assert not torch.equal(q.detach(), w.detach())  # the forward value really is quantized


def test_stochastic_resamples_in_training_and_is_deterministic_in_eval() -> None:
    torch.manual_seed(0)
    w = torch.rand(500) * 0.5
    quantizer = WeightQuantizer("ternary", stochastic=True, level=0.5)
    quantizer.train()
    assert not torch.equal(quantizer(w), quantizer(w))
    quantizer.eval()
    assert torch.equal(quantizer(w), ternarize(w, 0.5, stochastic=False))


# ---- attaching to nn.LSTM / nn.GRU / nn.RNN ------------------------------------------------------------------------
def test_w0_from_glorot_limits() -> None:
    model = nn.Sequential(nn.LSTM(5, 8, num_layers=2, bidirectional=True))
    targets = {tg.key: tg for tg in plan_targets(model, TernaryRNNConfig(method="ternary"))}
    assert len(targets) == 2 * 2 * 4  # layers x directions x (W_ih, W_hh, b_ih, b_hh)
    assert targets["0.weight_ih_l0"].w0 == pytest.approx(math.sqrt(6 / (5 + 8)))
    assert targets["0.weight_hh_l0_reverse"].w0 == pytest.approx(math.sqrt(6 / 16))
    assert targets["0.weight_ih_l1"].w0 == pytest.approx(math.sqrt(6 / (16 + 8)))  # fan-in 2 directions x 8
    assert targets["0.bias_hh_l1"].w0 == pytest.approx(math.sqrt(6 / (16 + 8)))  # biases use the input W0
    only_hid = plan_targets(model, TernaryRNNConfig(round_input_weights=False, round_bias=False))
    assert {tg.role for tg in only_hid} == {"hidden"}


@pytest.mark.parametrize(
    "rnn", [nn.LSTM(4, 6, batch_first=True), nn.GRU(4, 6, batch_first=True), nn.RNN(4, 6, batch_first=True)]
)
@pytest.mark.parametrize(
    ("method", "stochastic"), [("ternary", True), ("pow2_ternary", False), ("exponential", True), ("binary", False)]
)
def test_fused_layer_runs_quantized_and_bakes(rnn: nn.RNNBase, method: str, stochastic: bool) -> None:
    torch.manual_seed(0)
    model = nn.Sequential()
    model.add_module("rnn", rnn)
    config = TernaryRNNConfig(method=method, stochastic=stochastic)
    targets = attach_quantizers(model, config)
    x = torch.randn(3, 5, 4)
    model(x)[0].sum().backward()
    assert model.rnn.parametrizations.weight_hh_l0.original.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        expected = model(x)[0]
        quantized = {tg.param: getattr(tg.module, tg.param).clone() for tg in targets}
    bake_quantizers(model, targets)
    assert all(torch.equal(getattr(model.rnn, name), value) for name, value in quantized.items())
    assert set(model.state_dict()) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"}
    with torch.no_grad():
        assert torch.allclose(model(x)[0], expected, atol=1e-6)  # same weights; kernel paths may differ by 1 ulp
    for tg in targets:
        assert values_allowed(method, getattr(tg.module, tg.param), tg.level, tg.frac_bits), tg.key


# ---- storage accounting --------------------------------------------------------------------------------------------
def test_storage_bits_per_method() -> None:
    assert storage_bits("binary", t(-1.0, 1.0)) == 1.0
    assert storage_bits("ternary", t(-0.5, 0.0, 0.5)) == 2.0
    assert storage_bits("pow2_ternary", t(-0.5, 0.0)) == 2.0
    # exponents used: -3, -2, 0 -> range [-3, 0] = 4 exponents -> 2 bits, + 1 sign bit
    assert exponent_bits(t(0.125, -0.25, 1.0)) == 2
    assert storage_bits("exponential", t(0.125, -0.25, 1.0)) == 3.0
    assert storage_bits("exponential", t(0.5, -0.5)) == 1.0  # one exponent: the sign alone
    assert storage_bits("exponential", t(2.0**-5, 2.0**4)) == 1.0 + 4  # 10 exponents -> 4 bits


def test_weight_bits_and_model_size_for_a_ternary_lstm() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.LSTM(4, 6))
    targets = attach_quantizers(model, TernaryRNNConfig(method="ternary"))
    bake_quantizers(model, targets)
    weight_bits, tensors = storage_report(targets, "ternary")
    assert weight_bits["1.weight_ih_l0"] == 2.0 and weight_bits["1.bias_hh_l0"] == 2.0
    assert all(info["values_allowed"] for info in tensors.values())
    # 4 LSTM tensors: 24*4 + 24*6 + 24 + 24 = 288 elements x 2 bits + 4 float32 scales; embedding 40 x 32 bits
    stats = parameter_stats(model, weight_bits)
    assert stats["theoretical_bits"] == 288 * 2 + 4 * 32 + 40 * 32
    cost = cost_report(model, weight_bits)
    assert cost["recurrent_macs_per_token"] == 24 * 4 + 24 * 6
    assert cost["recurrent_bops_per_token"] == (24 * 4 + 24 * 6) * 2 * 32
    assert cost["recurrent_weight_bits"] == 288 * 2 + 4 * 32
    assert cost["recurrent_compression_ratio"] == pytest.approx(288 * 32 / (288 * 2 + 4 * 32))


# ---- the compressor end to end on a tiny char-level LM --------------------------------------------------------------
class TinyCharLM(Workload):
    """Next-character prediction on a fixed noisy periodic string (a stand-in LM workload for fast tests)."""

    info = WorkloadInfo(
        name="tiny_char_lm",
        paper="test",
        task="language-modeling",
        metric="bpc",
        higher_is_better=False,
        datasets=("synthetic",),
        default_dataset="synthetic",
        kind="rnn",
    )
    recipes = {"tiny": Recipe(epochs=2, batch_size=16, optimizer="adam", lr=0.01, schedule="none")}
    vocab, seq = 6, 12

    def build_model(self) -> nn.Module:
        return _CharLSTM(self.vocab)

    def _data(self, split: str) -> torch.Tensor:
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        text = torch.arange(64 * (self.seq + 1)) % self.vocab
        noise = torch.rand(text.shape, generator=g) < 0.1
        text = torch.where(noise, torch.randint(0, self.vocab, text.shape, generator=g), text)
        return text.view(64, self.seq + 1)

    def dataloader(self, split: str, batch_size: int | None = None, shuffle: bool | None = None) -> DataLoader:
        data = self._data(split)
        return DataLoader(TensorDataset(data[:, :-1], data[:, 1:]), batch_size=batch_size or self.recipe.batch_size)

    def example_inputs(self, batch_size: int, device: str | torch.device = "cpu", offset: int = 0) -> tuple:
        return (self._data("val")[offset : offset + batch_size, :-1].to(device),)

    def loss(self, model: nn.Module, batch: Any) -> torch.Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())

    def evaluate(self, model: nn.Module, loader: Iterable, device: str | torch.device) -> dict[str, float]:
        model.eval()
        with torch.no_grad():
            losses = [self.loss(model, self.move_batch(b, device)).item() for b in loader]
        return {"bpc": sum(losses) / len(losses) / math.log(2)}


class _CharLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.rnn = nn.LSTM(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(self.embed(x))[0])


def _apply(tmp_path: Any, **config: Any) -> Any:
    torch.manual_seed(0)
    workload = TinyCharLM()
    ctx = RunContext(workload, RunConfig(workload="tiny_char_lm", compressor="ternary_rnn"), tmp_path)
    return TernaryRNN(TernaryRNNConfig(**config)).apply(workload.build_model(), ctx), ctx


def test_apply_trains_bakes_and_reports(tmp_path: Any) -> None:
    result, ctx = _apply(tmp_path, method="ternary", stochastic=True)
    assert result.execution == "simulated"
    state = result.model.state_dict()
    w0_hid = math.sqrt(6 / 32)
    assert torch.isin(state["rnn.weight_hh_l0"], torch.tensor([-w0_hid, 0.0, w0_hid])).all()
    assert state["rnn.weight_hh_l0"].unique().numel() == 3
    assert result.weight_bits["rnn.weight_hh_l0"] == 2.0 and "head.weight" not in result.weight_bits
    assert all(info["values_allowed"] for info in result.summary["tensors"].values())
    assert result.summary["epochs"] == 2 and result.summary["test_time_rule"] == "deterministic"
    assert len(result.summary["val_bpc_per_epoch"]) == 2 and all(
        map(math.isfinite, result.summary["val_bpc_per_epoch"])
    )
    assert math.isfinite(ctx.evaluate(result.model)["bpc"])
    again, _ = _apply(tmp_path / "again", method="ternary", stochastic=True)
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in state.items())  # deterministic for a seed


def test_clip_callback_bounds_real_weights_to_h() -> None:
    model = nn.Sequential(nn.LSTM(3, 4))
    targets = attach_quantizers(model, TernaryRNNConfig(method="binary", binary_h=0.125))
    original = model[0].parametrizations.weight_hh_l0.original
    with torch.no_grad():
        original.copy_(torch.linspace(-1.0, 1.0, original.numel()).view_as(original))
    ClipRealWeights(targets).after_step(None, model)  # type: ignore[arg-type]
    assert original.min().item() == -0.125 and original.max().item() == 0.125
    assert torch.equal(model[0].weight_hh_l0.unique(), torch.tensor([-0.125, 0.125]))


def test_apply_binary_with_a_custom_level(tmp_path: Any) -> None:
    result, _ = _apply(tmp_path, method="binary", binary_h=0.125, epochs=1)
    assert set(result.model.rnn.weight_ih_l0.unique().tolist()) == {-0.125, 0.125}
    assert result.weight_bits["rnn.weight_ih_l0"] == 1.0


def test_non_recurrent_model_is_rejected(tmp_path: Any) -> None:
    workload = TinyCharLM()
    ctx = RunContext(workload, RunConfig(workload="tiny_char_lm", compressor="ternary_rnn"), tmp_path)
    with pytest.raises(IncompatibleWorkloadError, match="no nn.RNN"):
        TernaryRNN(TernaryRNNConfig(init="baseline")).apply(nn.Linear(3, 3), ctx)


# ---- config -------------------------------------------------------------------------------------------------------
def test_config_round_trip_and_validation() -> None:
    config = TernaryRNNConfig.from_strings({"method": "exponential", "stochastic": "true", "binary_h": "none"})
    assert config.stochastic is True and config.binary_h is None
    assert TernaryRNNConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="Unknown method"):
        TernaryRNNConfig(method="quaternary")
    with pytest.raises(ValueError, match="deterministic only"):
        TernaryRNNConfig(method="pow2_ternary", stochastic=True)
    assert COMPRESSORS.get("ternary_rnn") is TernaryRNN


def test_suite_file_compares_every_method_on_one_workload_and_recipe() -> None:
    from pathlib import Path

    from harness.suite_file import expand_suite, load_suite, to_run_config

    path = Path(__file__).resolve().parents[2] / "suite" / "rnn_ternary.yaml"
    configs = [to_run_config(entry, {"results": "/tmp/unused"}) for entry in expand_suite(load_suite(path))]
    methods = {(c.compressor, c.compressor_args.get("method"), c.compressor_args.get("stochastic")) for c in configs}
    assert methods == {
        ("none", None, None),
        ("ternary_rnn", "binary", "False"),
        ("ternary_rnn", "binary", "True"),
        ("ternary_rnn", "binary", None),
        ("ternary_rnn", "ternary", "False"),
        ("ternary_rnn", "ternary", "True"),
        ("ternary_rnn", "pow2_ternary", None),
        ("ternary_rnn", "exponential", "False"),
        ("ternary_rnn", "exponential", "True"),
    }
    assert len(configs) == 9 and sum(c.compressor_args.get("binary_h") == "none" for c in configs) == 1
    assert len({c.workload for c in configs}) == 1
    assert len({json.dumps(c.recipe_overrides, sort_keys=True) for c in configs}) == 1
    assert len({json.dumps(c.workload_options, sort_keys=True) for c in configs}) == 1
