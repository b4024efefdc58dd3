"""Madam, IntegerMadam and LNS-Madam (float) against hand-computed steps (arXiv 2006.14560 Alg. 1; 2106.13914)."""

from __future__ import annotations

import math

import pytest
import torch

from compressors.madam import IntegerMadam, LNSMadam, Madam, optimizer_factory


def _step(opt: torch.optim.Optimizer, p: torch.Tensor, grad: list[float]) -> None:
    p.grad = torch.tensor(grad, dtype=p.dtype)
    opt.step()


def test_madam_two_steps_match_hand_computation() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))
    opt = Madam([p])  # lr 0.01, p_scale 3, g_bound 10
    _step(opt, p, [0.1, 0.2, -0.3])
    # step 1: v = 0.001 g^2, bias correction 0.001 -> g^ = sign(g); w *= exp(-0.01 * g^ * sign(w))
    expected1 = [math.exp(-0.01), -2.0 * math.exp(0.01), 0.5 * math.exp(0.01)]
    assert p.detach().tolist() == pytest.approx(expected1, rel=1e-12)
    _step(opt, p, [0.2, 0.2, -0.3])
    # step 2, element 0: v = 0.999*0.001*0.01 + 0.001*0.04 = 4.999e-5; /(1-0.999^2) -> sqrt = 0.158137; g^ = 1.264721
    assert p.detach().tolist() == pytest.approx([0.977607310336988, -2.040402680053511, 0.5101006700133778], rel=1e-9)


def test_madam_clips_normalized_gradient_at_g_bound() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0], dtype=torch.float64))
    opt = Madam([p])
    for _ in range(150):
        _step(opt, p, [0.0])  # zero gradients: the weight does not move, v stays 0
    assert float(p.detach()) == 1.0
    _step(opt, p, [1.0])  # unclipped g^ = sqrt((1 - 0.999^151) / 0.001) = 11.84 -> clipped to 10
    assert float(p.detach()) == pytest.approx(math.exp(-0.1), rel=1e-12)


def test_madam_keeps_weights_within_p_scale_rms_and_zero_never_moves() -> None:
    torch.manual_seed(0)
    w0 = torch.randn(50, dtype=torch.float64)
    w0[3] = 0.0
    p = torch.nn.Parameter(w0.clone())
    bound = 3.0 * float(w0.pow(2).mean().sqrt())
    opt = Madam([p], lr=1.0)
    peak = 0.0
    for _ in range(200):
        _step(opt, p, torch.randn(50).tolist())
        peak = max(peak, float(p.detach().abs().max()))
    assert peak <= bound + 1e-12
    assert peak == pytest.approx(bound)  # weights reached the clamp with this large lr and were held there
    assert float(p.detach()[3]) == 0.0
    assert torch.equal(torch.sign(p.detach()), torch.sign(w0))  # multiplicative: signs never flip


def test_lns_madam_float_moves_log2_weights_on_a_1_over_128_grid() -> None:
    torch.manual_seed(1)
    w0 = torch.randn(64, dtype=torch.float64)
    p = torch.nn.Parameter(w0.clone())
    opt = LNSMadam([p], p_scale=100.0)  # clamp far away so only the update acts
    _step(opt, p, torch.randn(64).tolist())
    # step 1: round(g^) = sign(g), so every |w| moved by exactly 2^(+-1/128)
    steps = 128 * torch.log2(p.detach() / w0)
    assert torch.allclose(steps.abs(), torch.ones(64, dtype=torch.float64), atol=1e-9)
    for _ in range(20):
        _step(opt, p, torch.randn(64).tolist())
    steps = 128 * torch.log2(p.detach() / w0)
    assert torch.allclose(steps, steps.round(), atol=1e-7)
    assert float(steps.abs().max()) >= 2


def test_integer_madam_matches_public_code() -> None:
    p = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64))
    opt = IntegerMadam([p])  # base_lr 1e-3, lr_factor 10, levels 4096
    w_max = 3.0 * math.sqrt((0.25 + 1.0 + 4.0) / 3)
    torch.manual_seed(7)
    init = torch.randint_like(p, low=0, high=4095)
    torch.manual_seed(7)
    _step(opt, p, [1.0, 1.0, -1.0])
    # g^ = sign(g) = [1, 1, -1]; n += round(10 * g^) * sign(w) = [+10, -10, -10]
    n = (init + torch.tensor([10.0, -10.0, -10.0], dtype=torch.float64)).clamp(0, 4095)
    assert torch.equal(opt.state[p]["integer"], n)
    expected = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64) * w_max * torch.exp(-1e-3 * n)
    assert torch.allclose(p.detach(), expected, rtol=1e-12)


def test_optimizer_factory_trains_a_model_with_madam() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 10)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Sequential(torch.nn.Linear(10, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    opt = optimizer_factory("madam")(model, None)
    assert isinstance(opt, Madam) and opt.param_groups[0]["lr"] == 0.01
    losses = []
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]
    with pytest.raises(ValueError, match="Unknown Madam variant"):
        optimizer_factory("madamm")
