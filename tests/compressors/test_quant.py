"""QNN quantizers (arXiv 1609.07061 eqs. 1-4, §4) against hand-computed values, including 0 and ties."""

from __future__ import annotations

import pytest
import torch

from compressors.quant import (
    ap2,
    binarize_ste,
    grad_quant,
    hard_sigmoid,
    linear_quant,
    linear_quant_ste,
    log_quant,
    quantize_gradient,
    round_half_away,
    sign_pm1,
    stochastic_binarize,
)


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def test_sign_maps_zero_to_plus_one() -> None:
    # eq. (1) with the Theano/XNOR-kernel convention sign(0) = +1 (torch.sign would give 0)
    assert torch.equal(sign_pm1(t(-2.0, -1e-8, 0.0, -0.0, 1e-8, 3.0)), t(-1, -1, 1, 1, 1, 1))


def test_hard_sigmoid_values() -> None:
    assert torch.equal(hard_sigmoid(t(-3.0, -1.0, 0.0, 0.5, 1.0, 2.0)), t(0.0, 0.0, 0.5, 0.75, 1.0, 1.0))


def test_round_half_away_from_zero() -> None:
    assert torch.equal(round_half_away(t(0.5, 1.5, 2.5, -0.5, -2.5, 0.49, -0.51)), t(1, 2, 3, -1, -3, 0, -1))


def test_linear_quant_two_bits_hand_values() -> None:
    # k = 2: step 0.5, levels {-1, -0.5, 0, 0.5}; ties 0.25 -> 0.5 and -0.25 -> -0.5 (half away from zero)
    x = t(-2.0, -1.0, -0.3, -0.25, 0.0, 0.2, 0.25, 0.74, 0.75, 1.0)
    expected = t(-1.0, -1.0, -0.5, -0.5, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5)
    assert torch.equal(linear_quant(x, 2), expected)


def test_linear_quant_has_two_to_the_k_levels() -> None:
    x = torch.linspace(-1.5, 1.5, 10001)
    for bits in (2, 3, 4):
        levels = torch.unique(linear_quant(x, bits))
        assert levels.numel() == 2**bits
        assert levels.min() == -1.0 and levels.max() == 1.0 - 2.0 ** (1 - bits)


def test_linear_quant_rejects_one_bit() -> None:
    with pytest.raises(ValueError, match="bits >= 2"):
        linear_quant(t(0.1), 1)


def test_ap2_hand_values() -> None:
    # log2(3) = 1.585 -> 2 -> 4; log2(0.3) = -1.737 -> -2 -> 0.25; 2^1.5 is a tie -> exponent 2 (away from zero)
    x = t(3.0, -0.3, 1.0, 0.0, 2.0**1.5, -(2.0**-1.5), 5.0)
    assert torch.allclose(ap2(x), t(4.0, -0.25, 1.0, 0.0, 4.0, -0.25, 4.0))


def test_log_quant_clips_exponent_range() -> None:
    # k = 3: sign + 2 exponent bits -> magnitudes {1, 1/2, 1/4, 1/8}; zero stays zero
    x = t(2.0, 0.6, -0.3, 0.01, 0.0, -1e-6)
    assert torch.equal(log_quant(x, 3), t(1.0, 0.5, -0.25, 0.125, 0.0, -0.125))


def test_quantize_gradient_anchors_at_max() -> None:
    g = t(8.0, -3.0, 0.05, 0.0)
    # e_max = 3; 6 bits -> exponents 3-31 .. 3: 3 -> 2^2 (log2 3 = 1.58 -> 2), 0.05 -> 2^-4 (log2 = -4.32)
    assert torch.equal(quantize_gradient(g, 6), t(8.0, -4.0, 0.0625, 0.0))
    assert torch.equal(quantize_gradient(torch.zeros(3), 6), torch.zeros(3))


def test_binarize_ste_gradient_cancelled_outside_unit_interval() -> None:
    x = t(-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5).requires_grad_()
    out = binarize_ste(x)
    assert torch.equal(out.detach(), t(-1, -1, -1, 1, 1, 1, 1))
    out.backward(t(1, 2, 3, 4, 5, 6, 7))
    # g_r = g_q * 1(|r| <= 1)  (eq. 4): kept at |r| = 1
    assert torch.equal(x.grad, t(0, 2, 3, 4, 5, 6, 0))


def test_linear_quant_ste_gradient() -> None:
    x = t(-1.2, 0.3, 0.9).requires_grad_()
    linear_quant_ste(x, 2).sum().backward()
    assert torch.equal(x.grad, t(0.0, 1.0, 1.0))


def test_grad_quant_is_identity_forward_and_quantizes_backward() -> None:
    x = t(1.0, 2.0, 3.0).requires_grad_()
    y = grad_quant(x, 4)
    assert torch.equal(y.detach(), x.detach())
    y.backward(t(0.3, -5.0, 0.0))
    # e_max = round(log2 5) = 2; 4 bits -> exponents -5..2; 0.3 -> 2^-2, -5 -> -4
    assert torch.equal(x.grad, t(0.25, -4.0, 0.0))


def test_stochastic_binarization_is_unbiased() -> None:
    gen = torch.Generator().manual_seed(0)
    x = t(-1.5, -0.6, 0.0, 0.2, 0.9)
    samples = stochastic_binarize(x.expand(20000, -1), gen)
    assert set(samples.unique().tolist()) == {-1.0, 1.0}
    # E[x_b] = 2 hard_sigmoid(x) - 1 = clip(x, -1, 1); std of the mean <= 1/sqrt(20000) = 0.0071: 5 sigma
    assert torch.allclose(samples.mean(dim=0), x.clamp(-1, 1), atol=0.036)


def test_stochastic_linear_quant_is_unbiased() -> None:
    torch.manual_seed(0)
    x = t(-0.9, -0.3, 0.1, 0.35)
    samples = linear_quant(x.expand(20000, -1), 3, stochastic=True)
    assert torch.allclose(samples.mean(dim=0), x, atol=0.01)
    assert set(samples.unique().tolist()) <= {i * 0.25 for i in range(-4, 4)}
