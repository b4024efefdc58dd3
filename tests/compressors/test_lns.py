"""The number formats of LNS-Madam (arXiv 2106.13914 §3): grid invariant, round trips, error bounds, rounding."""

from __future__ import annotations

import math

import pytest
import torch

from compressors.lns import (
    NumberFormat,
    compute_scale,
    decode,
    encode,
    fake_quantize,
    lns_exponent,
    relative_error_bound,
)


def test_lns_levels_hand_computed() -> None:
    fmt = NumberFormat("lns", bits=3, gamma=2.0)  # N = 3 magnitude codes: 2^(-2/2), 2^(-1/2), 2^0
    assert fmt.max_code == 3
    assert fmt.levels.tolist() == pytest.approx([0.0, 0.5, 2**-0.5, 1.0])
    scale = torch.tensor(4.0)
    q = encode(torch.tensor([4.0, -2.9, 2.0, 0.9, -0.0, 100.0]), fmt, scale)
    # 2.9/4 = 0.725 -> log2 = -0.464 -> *2 = -0.93 -> rounds to -1 -> code 2; 0.9/4 = 0.225 < 0.5/2 -> zero
    assert q.tolist() == [3, -2, 1, 0, 0, 3]
    assert decode(q, fmt, scale).tolist() == pytest.approx([4.0, -4 * 2**-0.5, 2.0, 0.0, 0.0, 4.0])
    assert q.dtype == torch.int16


@pytest.mark.parametrize("bits,gamma", [(4, 1.0), (5, 2.0), (6, 4.0), (8, 8.0), (10, 32.0), (12, 128.0)])
def test_lns_grid_invariant_and_relative_error_bound(bits: int, gamma: float) -> None:
    torch.manual_seed(bits)
    fmt = NumberFormat("lns", bits, gamma)
    x = torch.randn(4000) * torch.rand(4000).pow(3)
    scale = compute_scale(x, per_channel=False)
    y = decode(encode(x, fmt, scale), fmt, scale)
    nonzero = y != 0
    exponents = lns_exponent(y[nonzero], scale, gamma)  # gamma * log2(|w|/s) stays an integer
    assert torch.allclose(exponents, exponents.round(), atol=1e-3)
    assert float(exponents.max()) <= 0 and float(exponents.min()) >= -(fmt.max_code - 1) - 1e-3
    in_range = x.abs() >= scale * fmt.levels[1].item()
    rel = ((y - x).abs() / x.abs())[in_range]
    assert float(rel.max()) <= relative_error_bound(fmt) + 1e-5  # 2^(1/(2 gamma)) - 1
    assert torch.equal(torch.sign(y[nonzero]), torch.sign(x[nonzero]))


@pytest.mark.parametrize("kind", ["lns", "fixed", "float"])
@pytest.mark.parametrize("bits", [4, 6, 8, 12])
def test_decode_encode_round_trip_is_exact(kind: str, bits: int) -> None:
    fmt = NumberFormat(kind, bits, gamma=(2 ** (bits - 1) - 1) / 16)  # LNS range 2^-16: representable in fp32
    n = fmt.max_code
    q = torch.arange(-n, n + 1, dtype=torch.int16)
    scale = torch.tensor(0.37)
    assert torch.equal(encode(decode(q, fmt, scale), fmt, scale), q)
    assert torch.equal(encode(decode(q, fmt, scale), fmt, scale, "stochastic"), q)  # on-grid values never move


@pytest.mark.parametrize("bits", [4, 6, 8])
def test_fixed_point_error_is_at_most_half_a_step(bits: int) -> None:
    fmt = NumberFormat("fixed", bits)
    x = torch.linspace(-1, 1, 1001)
    y = decode(encode(x, fmt, torch.tensor(1.0)), fmt, torch.tensor(1.0))
    assert float((y - x).abs().max()) <= 0.5 / fmt.max_code + 1e-7


def test_float_format_is_e4m3_at_8_bits() -> None:
    fmt = NumberFormat("float", 8)
    assert len(fmt.levels) == 128 and fmt.describe() == "FP8 (E4M3)"
    # E4M3 (all 16 exponent codes finite): largest 1.875 * 2^15, smallest subnormal 2^-3 * 2^1 (bias cancels)
    assert float(fmt.levels[1]) == pytest.approx(0.25 / (1.875 * 2**15))
    ratios = fmt.levels[9:] / fmt.levels[8:-1]  # normal numbers: neighbours differ by at most one mantissa step
    assert float(ratios.max()) <= 1 + 1 / 8 + 1e-9


@pytest.mark.parametrize("kind", ["lns", "fixed", "float"])
def test_stochastic_rounding_is_unbiased(kind: str) -> None:
    fmt = NumberFormat(kind, 5, gamma=2.0)
    gen = torch.Generator().manual_seed(0)
    scale = torch.tensor(1.0)
    for value in (0.3, -0.61, 0.05):
        x = torch.full((40000,), value)
        y = decode(encode(x, fmt, scale, "stochastic", gen), fmt, scale)
        assert len(torch.unique(y)) == 2  # exactly the two neighbouring levels
        assert float(y.mean()) == pytest.approx(value, abs=4e-3)
        nearest = float(decode(encode(x[:1], fmt, scale), fmt, scale))
        assert nearest in torch.unique(y).tolist()


def test_per_channel_scale_and_fake_quantize() -> None:
    w = torch.stack([torch.linspace(-1, 1, 9), torch.linspace(-100, 100, 9)])
    scale = compute_scale(w, per_channel=True)
    assert scale.shape == (2, 1) and scale.flatten().tolist() == [1.0, 100.0]
    rms = compute_scale(w, per_channel=False, statistic="rms", factor=3.0)
    assert float(rms) == pytest.approx(3.0 * float(w.pow(2).mean().sqrt()))
    y = fake_quantize(w, NumberFormat("lns", 8, 8.0), per_channel=True)
    assert float(y.abs().amax(dim=1)[1]) == 100.0
    assert float(((y - w).abs() / w.abs().clamp_min(1e-9))[w != 0].max()) <= math.pow(2, 1 / 16) - 1 + 1e-5


def test_invalid_formats_are_rejected() -> None:
    with pytest.raises(ValueError, match="Unknown number format"):
        NumberFormat("posit", 8)
    with pytest.raises(ValueError, match="bits must be"):
        NumberFormat("lns", 17)
    with pytest.raises(ValueError, match="Unknown rounding"):
        encode(torch.ones(2), NumberFormat(), torch.tensor(1.0), "up")
