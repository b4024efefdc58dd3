"""QNN recurrent layers: LSTM/GRU with k-bit weights and activations (Hubara et al., arXiv 1609.07061, §5 "quantized
recurrent neural networks": PTB language models with 2-4-bit weights and activations).

:class:`QuantRNN` replaces an ``nn.LSTM``/``nn.GRU`` (same parameter names, so state dicts load both ways) and runs
the gate equations of PyTorch's cells step by step, with the two matrix products of every step quantized:

- weights ``W_ih``, ``W_hh`` (every forward pass, real weights kept for the update, STE backward) with ``w_bits``:
  1 = binary, 2..31 = LinearQuant/LogQuant (§4), 32 = float;
- the matmul inputs with ``a_bits``: the recurrent state ``h_{t-1}`` and the input of every layer above the first
  (the hidden states of the layer below). Both lie in [-1, 1] (``o * tanh(c)`` for LSTM, a convex mix of tanh values
  for GRU), which is the range of LinearQuant, so no scale is needed. The first layer's input (the word embedding)
  stays float, as QNN keeps the first layer's real-valued input at higher precision (§2.5).
- biases, gate non-linearities (sigmoid, tanh) and the LSTM cell state stay float, and so do the embedding and the
  softmax layer (the method quantizes the recurrent layer's matrix products).

Weight scale (a documented difference): QNN's LinearQuant grid is fixed on [-1, 1], where the BN after each layer of a
feed-forward net absorbs the scale. A recurrent layer has no BN and its weights are small (Zaremba init +-0.05), so
on that grid they would all round to 0. Each weight tensor is therefore quantized as ``alpha * Q(W / alpha)`` with a
power-of-two ``alpha`` (a shift in hardware): ``2^ceil(log2 max|W|)`` for k >= 2 bits, so the grid spans the tensor,
and ``2^round(log2 mean|W|)`` for 1 bit (the L1-optimal binary scale rounded to a power of two). ``alpha`` is
recomputed from the real weights at every forward pass and carries no gradient. The paper does not specify its RNN
quantizer's scaling [verify against the paper's §5 text and Table 6].

With ``w_bits = a_bits = 32`` the layer computes exactly what ``nn.LSTM``/``nn.GRU`` computes (a test checks it).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from compressors.qnn_layers import FULL_PRECISION, quantize_activation, quantize_weight
from compressors.quant import binarize_ste, grad_quant

GATES = {"LSTM": 4, "GRU": 3}
RNNState = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def pow2_scale(w: torch.Tensor, bits: int) -> torch.Tensor:
    """Power-of-two scale of a weight tensor: ``2^ceil(log2 max|w|)`` (k >= 2 bits) or ``2^round(log2 mean|w|)``."""
    magnitude = w.detach().abs().mean() if bits == 1 else w.detach().abs().max()
    magnitude = magnitude.clamp_min(torch.finfo(w.dtype).tiny)
    exponent = torch.round(torch.log2(magnitude)) if bits == 1 else torch.ceil(torch.log2(magnitude))
    return torch.exp2(exponent)


def quantize_scaled_weight(w: torch.Tensor, bits: int, stochastic: bool, weight_quant: str) -> torch.Tensor:
    """``alpha * Q(w / alpha)`` with the power-of-two ``alpha`` of :func:`pow2_scale`; float when ``bits >= 32``."""
    if bits >= FULL_PRECISION:
        return w
    alpha = pow2_scale(w, bits)
    if bits == 1:
        return alpha * binarize_ste(w / alpha, stochastic)
    return alpha * quantize_weight(w / alpha, bits, stochastic, weight_quant)


class QuantRNN(nn.Module):
    """Multi-layer unidirectional LSTM/GRU with QNN-quantized weights and matmul inputs.

    Gate equations and gate order are PyTorch's (LSTM ``i, f, g, o``; GRU ``r, z, n`` with
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``). Inter-layer dropout as in ``nn.LSTM(dropout=...)``.
    """

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
                 batch_first: bool = False, bias: bool = True, w_bits: int = 32, a_bits: int = 32,
                 stochastic_weights: bool = False, stochastic_activations: bool = False,
                 weight_quant: str = "linear", g_bits: int | None = None) -> None:  # fmt: skip
        super().__init__()
        if mode not in GATES:
            raise ValueError(f"QuantRNN mode must be one of {list(GATES)}, got {mode!r}")
        self.mode, self.input_size, self.hidden_size, self.num_layers = mode, input_size, hidden_size, num_layers
        self.dropout, self.batch_first, self.bias = dropout, batch_first, bias
        self.w_bits, self.a_bits, self.weight_quant, self.g_bits = w_bits, a_bits, weight_quant, g_bits
        self.stochastic_weights, self.stochastic_activations = stochastic_weights, stochastic_activations
        rows = GATES[mode] * hidden_size
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(rows, fan_in)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(rows, hidden_size)))
            if bias:
                self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.zeros(rows)))
                self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.zeros(rows)))
        bound = 1.0 / math.sqrt(hidden_size)
        for param in self.parameters():  # nn.LSTM/GRU's default init
            nn.init.uniform_(param, -bound, bound)

    @classmethod
    def from_float(cls, rnn: nn.LSTM | nn.GRU, **quant: Any) -> QuantRNN:
        """A quantized copy of a unidirectional ``nn.LSTM``/``nn.GRU`` with its weights."""
        if rnn.bidirectional or getattr(rnn, "proj_size", 0):
            raise ValueError(
                "QNN recurrent layers support unidirectional LSTM/GRU without projections only; "
                f"got bidirectional={rnn.bidirectional}, proj_size={getattr(rnn, 'proj_size', 0)}"
            )
        new = cls(rnn.mode, rnn.input_size, rnn.hidden_size, rnn.num_layers, rnn.dropout, rnn.batch_first, rnn.bias,
                  **quant)  # fmt: skip
        new.load_state_dict(rnn.state_dict())
        return new.to(rnn.weight_ih_l0.device)

    def quantized_weights(self) -> dict[str, torch.Tensor]:
        """The weights as used in the forward pass (``weight_ih_l*``, ``weight_hh_l*``)."""
        stochastic = self.stochastic_weights and self.training
        return {name: quantize_scaled_weight(p, self.w_bits, stochastic, self.weight_quant)
                for name, p in self.named_parameters() if name.startswith("weight_")}  # fmt: skip

    def _quant_act(self, x: torch.Tensor) -> torch.Tensor:
        return quantize_activation(x, self.a_bits, self.stochastic_activations and self.training)

    def forward(self, x: torch.Tensor, state: RNNState | None = None) -> tuple[torch.Tensor, RNNState]:
        if self.batch_first:
            x = x.transpose(0, 1)
        h0, c0 = self._initial_state(state, x.shape[1], x)
        weights = self.quantized_weights()
        h_last, c_last = [], []
        for layer in range(self.num_layers):
            if layer > 0:
                x = F.dropout(self._quant_act(x), self.dropout, self.training) if self.dropout else self._quant_act(x)
            b_ih = getattr(self, f"bias_ih_l{layer}") if self.bias else None
            b_hh = getattr(self, f"bias_hh_l{layer}") if self.bias else None
            projected = grad_quant(F.linear(x, weights[f"weight_ih_l{layer}"], b_ih), self.g_bits)
            c_init = c0[layer] if c0 is not None else None
            x, h, c = self._run_layer(projected, weights[f"weight_hh_l{layer}"], b_hh, h0[layer], c_init)
            h_last.append(h)
            if c is not None:
                c_last.append(c)
        out = x.transpose(0, 1) if self.batch_first else x
        h_n = torch.stack(h_last)
        return out, ((h_n, torch.stack(c_last)) if self.mode == "LSTM" else h_n)

    def _initial_state(
        self, state: RNNState | None, batch: int, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if state is None:
            zeros = x.new_zeros(self.num_layers, batch, self.hidden_size)
            return zeros, (zeros if self.mode == "LSTM" else None)
        if self.mode == "LSTM":
            if not isinstance(state, tuple):
                raise ValueError("an LSTM state is a (h, c) tuple")
            return state[0], state[1]
        if isinstance(state, tuple):
            raise ValueError("a GRU state is a single tensor h")
        return state, None

    def _run_layer(self, projected: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor | None, h: torch.Tensor,
                   c: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:  # fmt: skip
        outputs = []
        for step in range(projected.shape[0]):
            recurrent = grad_quant(F.linear(self._quant_act(h), w_hh, b_hh), self.g_bits)
            if self.mode == "LSTM":
                assert c is not None
                i, f, g, o = (projected[step] + recurrent).chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                x_r, x_z, x_n = projected[step].chunk(3, dim=-1)
                h_r, h_z, h_n = recurrent.chunk(3, dim=-1)
                r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
                h = (1 - z) * torch.tanh(x_n + r * h_n) + z * h
            outputs.append(h)
        return torch.stack(outputs), h, c

    def extra_repr(self) -> str:
        return (f"{self.mode}({self.input_size}, {self.hidden_size}, num_layers={self.num_layers}), "
                f"w_bits={self.w_bits}, a_bits={self.a_bits}, "
                f"stochastic w/a={self.stochastic_weights}/{self.stochastic_activations}")  # fmt: skip
