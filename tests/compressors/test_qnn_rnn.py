"""QNN recurrent layers (arXiv 1609.07061 §5): exact float equivalence with nn.LSTM/GRU, allowed weight values,
quantized matmul inputs, STE gradients, and the compressor on a language model."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from compressors.qnn import QNN, QNNConfig, is_fully_binary, layer_weight_bits, quantize_model
from compressors.qnn_rnn import QuantRNN, pow2_scale, quantize_scaled_weight
from compressors.quant import linear_quant
from harness.config import RunConfig
from harness.context import RunContext
from tests.compressors.test_ternary_rnn import TinyCharLM


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_float_quant_rnn_equals_torch_rnn(cls: type[nn.RNNBase]) -> None:
    torch.manual_seed(0)
    rnn = cls(5, 7, num_layers=2, batch_first=True)
    quant = QuantRNN.from_float(rnn)
    x = torch.randn(3, 6, 5)
    state = (torch.randn(2, 3, 7), torch.randn(2, 3, 7)) if cls is nn.LSTM else torch.randn(2, 3, 7)
    expected, expected_state = rnn(x, state)
    got, got_state = quant(x, state)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got_state, expected_state, atol=1e-6, rtol=1e-5)
    assert set(quant.state_dict()) == set(rnn.state_dict())  # loads back into the torch layer


def test_pow2_scale_and_weight_grids() -> None:
    w = torch.tensor([[0.03, -0.05], [0.01, 0.0]])
    assert pow2_scale(w, 4).item() == 2.0**-4  # ceil(log2 0.05) = -4.3 -> -4
    assert pow2_scale(w, 1).item() == 2.0**-5  # mean |w| = 0.0225, log2 = -5.47 -> -5
    q4 = quantize_scaled_weight(w, 4, False, "linear")
    torch.testing.assert_close(q4, 2.0**-4 * linear_quant(w / 2.0**-4, 4))
    assert q4.tolist() == [[0.03125, -0.046875], [0.0078125, 0.0]]  # step 2^-4 * 2^-3 = 2^-7: 4, -6, 1, 0 steps
    q1 = quantize_scaled_weight(w, 1, False, "linear")
    assert q1.tolist() == [[2.0**-5, -(2.0**-5)], [2.0**-5, 2.0**-5]]  # sign(0) = +1


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_weights_take_only_allowed_values(bits: int) -> None:
    torch.manual_seed(0)
    quant = QuantRNN.from_float(nn.LSTM(6, 8, num_layers=2), w_bits=bits, a_bits=bits)
    for name, w in quant.quantized_weights().items():
        values = torch.unique(w)
        assert values.numel() <= 2**bits, name
        steps = values / pow2_scale(getattr(quant, name), bits)
        if bits == 1:
            assert set(steps.tolist()) <= {-1.0, 1.0}
        else:
            assert torch.equal(steps * 2 ** (bits - 1), torch.round(steps * 2 ** (bits - 1)))  # on the k-bit grid


def test_matmul_inputs_are_quantized_one_step_by_hand() -> None:
    """One LSTM step from a non-zero state, recomputed by hand with 2-bit h and 2-bit weights."""
    torch.manual_seed(1)
    rnn = nn.LSTM(3, 4)
    quant = QuantRNN.from_float(rnn, w_bits=2, a_bits=2).eval()
    x, h0, c0 = torch.randn(1, 1, 3), torch.rand(1, 1, 4) * 2 - 1, torch.randn(1, 1, 4)
    w = quant.quantized_weights()
    gates = x[0] @ w["weight_ih_l0"].T + rnn.bias_ih_l0 + linear_quant(h0[0], 2) @ w["weight_hh_l0"].T + rnn.bias_hh_l0
    i, f, g, o = gates.chunk(4, dim=-1)
    c = torch.sigmoid(f) * c0[0] + torch.sigmoid(i) * torch.tanh(g)
    expected = torch.sigmoid(o) * torch.tanh(c)
    out, (h, c_n) = quant(x, (h0, c0))
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(c_n[0], c)
    assert not torch.allclose(out, rnn(x, (h0, c0))[0])  # quantization changed the result


def test_ste_gradients_reach_real_weights() -> None:
    torch.manual_seed(0)
    quant = QuantRNN.from_float(nn.GRU(4, 5, num_layers=2, batch_first=True), w_bits=2, a_bits=2)
    out, _ = quant(torch.randn(2, 3, 4))
    out.square().sum().backward()
    for name, param in quant.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_quantize_model_replaces_the_recurrent_layer_only() -> None:
    torch.manual_seed(0)
    model = TinyCharLM().build_model()
    quantize_model(model, QNNConfig(w_bits=2, a_bits=3))
    assert isinstance(model.rnn, QuantRNN) and type(model.head) is nn.Linear and type(model.embed) is nn.Embedding
    assert not is_fully_binary(model)
    bits = layer_weight_bits(model)
    assert bits["rnn.weight_ih_l0"] == 2.0 and bits["rnn.weight_hh_l0"] == 2.0 and bits["rnn.weight"] == 2.0
    # MAC-weighted input bits: W_ih (64 x 8) sees the float embedding, W_hh (64 x 16) sees 3-bit h
    assert bits["activation:rnn"] == pytest.approx((64 * 8 * 32 + 64 * 16 * 3) / (64 * 24))
    assert "head.weight" not in bits


def _apply(tmp_path: Any, **config: Any) -> Any:
    torch.manual_seed(0)
    workload = TinyCharLM()
    ctx = RunContext(workload, RunConfig(workload="tiny_char_lm", compressor="qnn"), tmp_path)
    return QNN(QNNConfig(**config)).apply(workload.build_model(), ctx), ctx


def test_compressor_trains_a_quantized_lstm_language_model(tmp_path: Any) -> None:
    result, ctx = _apply(tmp_path, w_bits=2, a_bits=2, lr=0.01)
    assert result.execution == "simulated"
    layers = result.summary["layers"]
    assert set(layers) == {"rnn.weight_ih_l0", "rnn.weight_hh_l0"}
    assert all(row["distinct_weight_values"] <= 4 for row in layers.values())
    bpc = ctx.evaluate(result.model)["bpc"]
    assert math.isfinite(bpc) and bpc < math.log2(TinyCharLM.vocab)  # learned something beyond uniform
