"""LNS-Madam on transformer-style models: LNS embedding tables, the ``clamp='max'`` scale for pretrained weights,
and a tiny Hugging Face BERT whose every Linear and Embedding is stored as LNS codes."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compressors.lns import NumberFormat, decode, lns_exponent
from compressors.lns_madam import LNSEmbedding, LNSLinear, LNSMadamConfig, QuantSpec, quantize_model
from compressors.madam import QuantizedWeightOptimizer

LNS8 = NumberFormat("lns", 8, 8.0)


def _spec(clamp: str = "rms", p_scale: float = 3.0) -> QuantSpec:
    return QuantSpec(storage=LNS8, forward=LNS8, grad=LNS8, p_scale=p_scale, clamp=clamp)


def test_clamp_max_keeps_a_pretrained_outlier_that_madams_rms_clamp_clips() -> None:
    # weights [1, 1, 1, 1, 1, 1, 1, 1, 1, 10]: RMS = sqrt((9 + 100) / 10) = sqrt(10.9) = 3.3015; 3 * RMS = 9.9045
    w = torch.ones(1, 10)
    w[0, 9] = 10.0
    clipped = LNSLinear(_linear(w), _spec("rms"))
    kept = LNSLinear(_linear(w), _spec("max"))
    assert clipped.scale.item() == pytest.approx(3 * 10.9**0.5, rel=1e-6)
    assert kept.scale.item() == pytest.approx(10.0, rel=1e-6)  # max(3 * RMS, max|w|) = max(9.9045, 10)
    assert decode(clipped.codes, LNS8, clipped.scale)[0, 9].item() == pytest.approx(3 * 10.9**0.5, rel=1e-6)
    assert decode(kept.codes, LNS8, kept.scale)[0, 9].item() == pytest.approx(10.0, rel=1e-6)
    # the small weights stay on the LNS grid of the larger scale: 8 * log2(1 / 10) = -26.58 -> code exponent -27
    small = decode(kept.codes, LNS8, kept.scale)[0, 0]
    assert small.item() == pytest.approx(10.0 * 2 ** (-27 / 8), rel=1e-6)
    with pytest.raises(ValueError, match="clamp"):
        LNSMadamConfig(clamp="median")


def _linear(w: torch.Tensor) -> nn.Linear:
    layer = nn.Linear(w.shape[1], w.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(w)
    return layer


def test_lns_embedding_stores_codes_looks_up_decoded_rows_and_updates_only_used_rows() -> None:
    torch.manual_seed(0)
    emb = nn.Embedding(6, 4, padding_idx=0)
    layer = LNSEmbedding(emb, _spec())
    assert layer.codes.dtype == torch.int16 and not hasattr(layer, "weight") and list(layer.parameters()) == []
    table = decode(layer.codes, LNS8, layer.scale)
    exponents = lns_exponent(table[table != 0], layer.scale, 8.0)
    assert torch.allclose(exponents, exponents.round(), atol=1e-4)  # stored table on the LNS grid
    ids = torch.tensor([[1, 2, 0], [2, 3, 0]])
    layer.eval()
    assert torch.equal(layer(ids), F.embedding(ids, table, padding_idx=0))
    layer.train()
    opt = QuantizedWeightOptimizer([layer], [], lr=1 / 8)
    before = layer.codes.clone()
    layer(ids).pow(2).sum().backward()
    grad = layer.live_weight.grad
    assert grad is not None and torch.all(grad[[0, 4, 5]] == 0)  # padding row and unused rows get no gradient
    opt.step()
    moved = (layer.codes != before).any(dim=1)
    assert moved[[1, 2, 3]].all() and not moved[[0, 4, 5]].any()  # Madam: zero gradient -> g^ = 0 -> no move
    # the loss sum(e^2) falls when |e| shrinks: every moved magnitude code went down (towards zero)
    assert torch.all(layer.codes.abs()[1:4] <= before.abs()[1:4])


def _tiny_bert() -> nn.Module:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
        attn_implementation="eager",
    )
    return transformers.BertForSequenceClassification(config).eval()


def test_every_bert_linear_and_embedding_becomes_lns_and_16_bit_matches_fp32() -> None:
    model = _tiny_bert()
    ids = torch.randint(0, 50, (3, 8), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    n_linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    n_embedding = sum(isinstance(m, nn.Embedding) for m in model.modules())
    with torch.no_grad():
        ref = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    quantized = copy.deepcopy(model)
    config = LNSMadamConfig(bits=16, gamma=2048.0, grad_bits=16, grad_gamma=2048.0, clamp="max")
    layers = quantize_model(quantized, config.spec())
    # q, k, v, attention output, 2 FFN, pooler, classifier; word, position and segment embeddings
    assert len(layers) == n_linear + n_embedding == 8 + 3
    assert not any(isinstance(m, (nn.Linear, nn.Embedding)) for m in quantized.modules())
    with torch.no_grad():
        out = quantized.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    # 16-bit LNS (relative step 2^(1/2048) - 1 = 3.4e-4) on weights and activations: output within 1e-3 relative
    assert ((out - ref).norm() / ref.norm()).item() < 1e-3
    # with Madam's default clamp (3 x RMS) at the same precision the embedding outliers of this init are clipped
    clipped = copy.deepcopy(model)
    quantize_model(clipped, LNSMadamConfig(bits=16, gamma=2048.0, clamp="rms").spec())
    with torch.no_grad():
        out_clipped = clipped.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    assert ((out_clipped - ref).norm() / ref.norm()).item() > ((out - ref).norm() / ref.norm()).item()


def test_lns_madam_trains_a_tiny_bert_on_codes_only() -> None:
    model = _tiny_bert()
    layers = quantize_model(model, LNSMadamConfig(clamp="max").spec())
    model.train()
    float_params = [p for p in model.parameters() if p.requires_grad]
    assert all(p.dim() == 1 for p in float_params)  # only LayerNorm weights and biases stay float
    opt = QuantizedWeightOptimizer(list(layers.values()), float_params, lr=1 / 8, update_rounding="stochastic")
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(1, 50, (16, 6), generator=gen)
    labels = ids[:, 0] % 3  # learnable from the first token
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5
    assert all(layer.codes.dtype == torch.int16 and layer.live_weight is None for layer in layers.values())
