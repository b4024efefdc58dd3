"""UNAS (arXiv 1912.07651): the categorical distribution against hand values, Gumbel-softmax samples, the estimators
on a toy problem with an exact gradient (unbiasedness, variance against REINFORCE), the latency surrogate and
hinge, derived architectures, determinism, and a tiny end-to-end ``apply`` in both search spaces."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from compressors.base import IncompatibleWorkloadError
from compressors.unas.compressor import UNAS, UNASConfig, eval_options, reference_architecture
from compressors.unas.distributions import (
    ArchDistribution,
    DartsSpace,
    ProxylessSpace,
    entropy,
    gumbel_softmax,
    log_prob,
    rebar_relaxed,
    uniform_noise,
)
from compressors.unas.estimators import MovingAverage, per_sample_gradients
from compressors.unas.latency import LatencyMeter, fit_surrogate, latency_coefficient, latency_hinge, ridge_fit
from compressors.unas.search import SearchSettings, UnasSearch, search_loaders
from harness.config import RunConfig
from harness.context import RunContext
from workloads.nas.darts import DartsEvalNetwork, Genotype
from workloads.nas.darts_ops import UNAS_PRIMITIVES
from workloads.nas.proxyless import WIDTHS, ProxylessEvalNetwork, parse_architecture
from workloads.nas.workloads import DartsSearchWorkload, ProxylessSearchWorkload

SMALL = {"epochs": 1, "max_train_samples": 128, "max_val_samples": 64, "batch_size": 32}


# ---- the categorical -------------------------------------------------------------------------------------------------
def test_log_prob_and_entropy_match_hand_computed_values() -> None:
    logits = torch.log(torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 2.0]]))  # q = (1/6, 2/6, 3/6) and (1/4, 1/4, 1/2)
    d = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])
    assert log_prob(logits.unsqueeze(0), d).item() == pytest.approx(math.log(1 / 2) + math.log(1 / 4), abs=1e-6)
    hand = -(1 / 6 * math.log(1 / 6) + 2 / 6 * math.log(2 / 6) + 3 / 6 * math.log(3 / 6))
    hand += -(2 * 0.25 * math.log(0.25) + 0.5 * math.log(0.5))
    assert entropy(logits).item() == pytest.approx(hand, abs=1e-6)
    dist = ArchDistribution({"a": (2, 3)}, soften_eps=0.1)  # alpha = 0: q = 1/3, softened (1/3 + 0.1) / 1.3 = 1/3
    assert dist.log_prob({"a": d}).item() == pytest.approx(2 * math.log(1 / 3), abs=1e-6)
    with torch.no_grad():
        dist.alphas[0].copy_(logits)
    softened = (torch.tensor([1 / 6, 2 / 6, 3 / 6]) + 0.1) / 1.3  # log(softmax(alpha) + eps), renormalised
    assert dist.probs()["a"][0] == pytest.approx(softened.tolist(), abs=1e-6)


def test_gumbel_softmax_samples_follow_q_and_rebar_keeps_the_value() -> None:
    q = torch.tensor([0.1, 0.2, 0.3, 0.4])
    n = 40_000
    u = uniform_noise((n, 4), torch.Generator().manual_seed(0))
    relaxed, d = gumbel_softmax(q.log().expand(n, 4), u, 0.4)
    freq = d.mean(0)
    se = (q * (1 - q) / n).sqrt()
    assert ((freq - q).abs() / se).max() < 4.0, freq  # Gumbel-max: d ~ q exactly
    assert torch.allclose(relaxed.sum(-1), torch.ones(n)) and (relaxed > 0).all()
    assert torch.equal(relaxed.argmax(-1), d.argmax(-1))
    # E[z~] is not q at tau 0.4 but is ordered like it; a tiny tau gives one-hots
    assert torch.all(relaxed.mean(0).diff() > 0)
    sharp, _ = gumbel_softmax(q.log().expand(n, 4), u, 1e-3)
    assert ((sharp - d).abs().amax(-1) < 1e-3).float().mean() > 0.99  # all but near-ties of the perturbed logits
    theta = q.log().expand(n, 4).clone().requires_grad_(True)
    rebar, d2 = rebar_relaxed(theta, u, 0.4)
    assert torch.equal(d2, d) and torch.allclose(rebar, relaxed, atol=1e-5)  # same value, only the gradient differs
    (grad,) = torch.autograd.grad((rebar * torch.arange(4.0)).sum(), theta)
    (plain_grad,) = torch.autograd.grad((gumbel_softmax(theta, u, 0.4)[0] * torch.arange(4.0)).sum(), theta)
    assert not torch.allclose(grad, plain_grad)  # the conditional-correction term is there


# ---- estimators on a toy problem with an exact gradient --------------------------------------------------------------
TOY_LOGITS = torch.tensor([[0.5, -0.3, 0.1, 0.9], [-1.0, 0.2, 0.4, 0.0], [0.3, 0.3, -0.6, 1.2]])
TOY_C = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.2, 1.5, -1.0, 0.7], [2.0, 0.1, -0.5, 1.0]])


def toy_f(z: torch.Tensor) -> torch.Tensor:
    """A smooth, non-linear f of 3 categorical choices with 4 options; defined on one-hots and relaxations."""
    s = (z * TOY_C).sum(-1)
    return (s.sum(-1) - 1.0) ** 2 + s[:, 0] * s[:, 1]


def exact_gradient(logits: torch.Tensor) -> torch.Tensor:
    theta = logits.clone().requires_grad_(True)
    total = torch.zeros(())
    for combo in itertools.product(range(logits.shape[1]), repeat=logits.shape[0]):
        d = F.one_hot(torch.tensor(combo), logits.shape[1]).float().unsqueeze(0)
        total = total + log_prob(theta.unsqueeze(0), d).exp()[0] * toy_f(d)[0]
    (grad,) = torch.autograd.grad(total, theta)
    return grad


def test_unas_estimator_is_unbiased_and_has_lower_variance_than_reinforce() -> None:
    exact = exact_gradient(TOY_LOGITS)
    n = 50_000
    figures = {}
    for name, kwargs in {
        "unas": {},
        "reinforce": {},
        "reinforce_ema099": {"baseline_decay": 0.99},
        "gumbel": {},
    }.items():
        estimator = name.split("_")[0]
        grads = per_sample_gradients(TOY_LOGITS, toy_f, estimator, n, 0.4, torch.Generator().manual_seed(1), **kwargs)
        mean, se = grads.mean(0), grads.std(0) / math.sqrt(n)
        figures[name] = {
            "max_abs_z": float(((mean - exact) / se).abs().max()),
            "max_abs_error": float((mean - exact).abs().max()),
            "total_variance": float(grads.var(0).sum()),
        }
    print("\nexact gradient:", exact.tolist())
    for name, row in figures.items():
        print(f"{name:>17}: max |z| {row['max_abs_z']:.2f}, max |error| {row['max_abs_error']:.4f}, "
              f"total variance {row['total_variance']:.1f} (n = {n})")  # fmt: skip
    assert figures["unas"]["max_abs_z"] < 4.0  # Monte-Carlo mean within 4 standard errors on all 12 coordinates
    assert figures["reinforce"]["max_abs_z"] < 4.0
    assert figures["unas"]["total_variance"] < 0.6 * figures["reinforce"]["total_variance"]
    assert figures["unas"]["total_variance"] < figures["reinforce_ema099"]["total_variance"]
    assert figures["gumbel"]["max_abs_z"] > 10.0  # the pure relaxation is biased: that is what the REINFORCE part fixes


def test_moving_average_baseline_follows_the_official_update() -> None:
    avg = MovingAverage(0.1)  # ExpMovingAvgrageMeter(momentum=0.9): avg = 0.1 avg + 0.9 value
    assert avg.update(2.0) == 0.0 and avg.avg == pytest.approx(1.8)
    assert avg.update(1.0) == pytest.approx(1.8) and avg.avg == pytest.approx(0.18 + 0.9)


# ---- latency ---------------------------------------------------------------------------------------------------------
def test_ridge_surrogate_recovers_an_additive_latency_model() -> None:
    gen = torch.Generator().manual_seed(0)
    layers, k = 12, 5
    cost = torch.rand(layers, k, generator=gen) * 2.0
    d = F.one_hot(torch.randint(0, k, (400, layers), generator=gen), k).float().flatten(1)
    latency = 3.0 + d @ cost.flatten() + 0.05 * torch.randn(400, generator=gen)
    surrogate, stats = fit_surrogate(list(d), latency.tolist())
    assert stats["n_train"] == 320 and stats["n_test"] == 80
    assert stats["r2"] > 0.98 and stats["mae_ms"] < 0.15
    w, b = ridge_fit(d[:320], latency[:320], 1.0)  # closed form: (X1^T X1 + I)^-1 X1^T y
    x1 = torch.cat([d[:320], torch.ones(320, 1)], 1).double()
    ref = torch.linalg.solve(x1.T @ x1 + torch.eye(x1.shape[1], dtype=torch.float64), x1.T @ latency[:320].double())
    assert torch.allclose(torch.cat([w, b.view(1)]).double(), ref, atol=1e-4)
    assert torch.allclose(surrogate(d[:3]), d[:3] @ w + b)
    with pytest.raises(ValueError, match="too few"):
        fit_surrogate(list(d[:5]), latency[:5].tolist())


def test_latency_hinge_sign_and_coefficient_ramp() -> None:
    assert latency_hinge(8.0, 10.0, 0.1).item() == 0.0  # below the target: no penalty
    assert latency_hinge(10.0, 10.0, 0.1).item() == 0.0
    assert latency_hinge(12.0, 10.0, 0.1).item() == pytest.approx(0.2)
    x = torch.tensor([9.0, 11.0], requires_grad=True)
    latency_hinge(x, 10.0, 0.5).sum().backward()
    assert x.grad is not None and x.grad.tolist() == [0.0, 0.5]  # slower than the target is pushed down, never up
    assert [latency_coefficient(s, 100, 0.1) for s in (0, 50, 100, 500)] == pytest.approx([0.0, 0.05, 0.1, 0.1])


def test_latency_meter_uses_the_harness_meter_and_caches(tmp_path: Path) -> None:
    wl = ProxylessSearchWorkload(profile="tiny", options={"width_multiplier": 0.25}, recipe_overrides=SMALL)
    space = ProxylessSpace(WIDTHS["unas"].scaled(0.25), 10, {"widths": "unas", "width_multiplier": 0.25})
    meter = LatencyMeter(space.build_eval, space.key, wl, "cpu", batch_size=4, repeats=3, warmup=1)
    fast = tuple(c[0] if "mic_zero" not in c else "mic_zero" for *_, c in space.plan)
    slow = tuple("mic_7x7_e6" for _ in space.plan)
    t_fast, t_slow = meter(fast), meter(slow)
    assert 0 < t_fast < t_slow and meter(fast) == t_fast and meter.measured == 2
    assert "below_methodology_minimums" in meter.describe()["flags"]  # the search's quick meter says so


def test_thread_clock_is_cpu_only_and_recorded() -> None:
    wl = ProxylessSearchWorkload(profile="tiny", options={"width_multiplier": 0.1}, recipe_overrides=SMALL)
    space = ProxylessSpace(WIDTHS["unas"].scaled(0.1), 10, {"widths": "unas", "width_multiplier": 0.1})
    with pytest.raises(ValueError, match="latency_clock=thread"):
        LatencyMeter(space.build_eval, space.key, wl, "cuda", clock="thread")
    if torch.get_num_threads() == 1:
        meter = LatencyMeter(space.build_eval, space.key, wl, "cpu", batch_size=2, repeats=2, warmup=1, clock="thread")
        assert meter(reference_architecture(space)) > 0 and "thread" in meter.describe()["clock"]


def test_grouped_samples_average_their_examples() -> None:
    from compressors.unas.search import _groups

    w = {"a": torch.arange(3.0).view(3, 1, 1)}
    index, per_example = _groups(w, 7)
    assert index.tolist() == [0, 0, 0, 1, 1, 2, 2] and per_example["a"].view(-1).tolist() == [0, 0, 0, 1, 1, 2, 2]
    assert _groups(w, 3)[1] is w and _groups({"a": w["a"][:1]}, 7)[1]["a"].shape[0] == 1  # per example / shared


# ---- the spaces and derived architectures ----------------------------------------------------------------------------
def _darts_space() -> DartsSpace:
    return DartsSpace(4, UNAS_PRIMITIVES, 10, {"layers": 5, "init_channels": 8})


def test_derived_darts_genotypes_are_valid_with_distinct_inputs() -> None:
    space = _darts_space()
    torch.manual_seed(0)
    for _ in range(20):
        alphas = {k: torch.randn(r, c) for k, (r, c) in space.groups().items()}
        genotype = space.derive(alphas)
        assert isinstance(genotype, Genotype) and DartsSpace.distinct_inputs(genotype)
    alphas = {k: torch.zeros(r, c) for k, (r, c) in space.groups().items()}
    alphas["normal.input.1"] = torch.tensor([[0.0, 0.0, 3.0], [0.0, 1.0, 2.0]])  # both slots prefer state 2
    official = space.derive(alphas, distinct_inputs=False)  # UNAS' per-slot argmax keeps the duplicate
    assert official.normal[2][1] == official.normal[3][1] == 2
    picked = space.derive(alphas)
    assert (picked.normal[2][1], picked.normal[3][1]) == (2, 1)  # log q0(2) + log q1(1) is the best distinct pair
    net = DartsEvalNetwork(picked, 10, 8, 5, auxiliary=False)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_alpha_penalty_and_surrogate_features_hand_values() -> None:
    space = _darts_space()
    dist = ArchDistribution(space.groups())
    d = dist.sample(3, "none", torch.Generator().manual_seed(0)).discrete
    for i in range(4):  # make node i of sample 0 pick the same input and op in both slots
        d[f"normal.input.{i}"][0] = F.one_hot(torch.tensor([1, 1]), i + 2).float()
        d["normal.op"][0, 2 * i : 2 * i + 2] = F.one_hot(torch.tensor([3, 3]), 7).float()
    penalty = space.alpha_penalty(d)
    assert penalty[0] >= 4.0 and penalty.shape == (3,)
    assert space.features(d).shape == (3, 2 * 2 * sum((i + 2) * 7 for i in range(4)))
    assert space.features(d).sum(1).tolist() == [16.0, 16.0, 16.0]  # one 1 per slot: 2 kinds x 4 nodes x 2 slots


def test_proxyless_space_maps_samples_to_allowed_architectures() -> None:
    widths = WIDTHS["unas"].scaled(0.25)
    space = ProxylessSpace(widths, 10, {"widths": "unas", "width_multiplier": 0.25})
    assert space.groups() == {"normal": (15, 7), "reduce": (6, 6)}
    dist = ArchDistribution(space.groups(), soften_eps=0.08)
    sample = dist.sample(4, "rebar", torch.Generator().manual_seed(0))
    for i in range(4):
        arch = space.architecture(sample.discrete, i)
        assert parse_architecture(arch, widths) == arch  # every choice is allowed in its layer
    derived = space.derive({k: torch.randn(r, c) for k, (r, c) in space.groups().items()})
    assert parse_architecture(derived, widths) == derived
    assert isinstance(space.build_eval(derived), ProxylessEvalNetwork)
    assert reference_architecture(space) == tuple(["mic_3x3_e6"] * 21)


# ---- config and compatibility ----------------------------------------------------------------------------------------
def test_config_errors_name_the_value() -> None:
    with pytest.raises(ValueError, match="estimator='rebar'"):
        UNASConfig(estimator="rebar")
    with pytest.raises(ValueError, match="not both"):
        UNASConfig(target_latency_ms=5.0, target_latency_ratio=0.7)
    with pytest.raises(ValueError, match="train_portion=1.0"):
        UNASConfig(train_portion=1.0)
    with pytest.raises(ValueError, match="latency_samples=5"):
        UNASConfig(latency_samples=5)
    assert UNASConfig.from_dict(UNASConfig(objective="train").to_dict()) == UNASConfig(objective="train")


def test_non_search_workloads_are_refused_before_training() -> None:
    from workloads import WORKLOADS

    lenet = WORKLOADS.get("lenet3")(profile="tiny")
    with pytest.raises(IncompatibleWorkloadError, match="darts_search.*proxyless_search"):
        UNAS().check_compatible(lenet)
    wl = DartsSearchWorkload(profile="tiny", options=DartsSearchWorkload.tiny_options)
    with pytest.raises(ValueError, match="genotype is set by the search"):
        UNAS(UNASConfig(eval_options="genotype=DARTS_V2")).check_compatible(wl)
    assert eval_options(wl, "layers=8") == {**eval_options(wl, ""), "layers": 8}


# ---- the search loop: determinism ------------------------------------------------------------------------------------
def _tiny_search(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    wl = ProxylessSearchWorkload(profile="tiny", options={"width_multiplier": 0.1}, recipe_overrides=SMALL)
    space = ProxylessSpace(WIDTHS["unas"].scaled(0.1), 10, {"widths": "unas", "width_multiplier": 0.1})
    torch.manual_seed(seed)
    net = wl.build_model()
    settings = SearchSettings(epochs=1, warmup_epochs=1, arch_lr=0.05, same_alpha_minibatch=False, seed=seed)
    train, held = search_loaders(wl, 0.75, 32, seed)
    result = UnasSearch(space, net, settings, wl.recipe, "cpu").run(train, held)
    return result.alphas, net.state_dict()


def test_search_is_deterministic_for_a_seed() -> None:
    (a1, w1), (a2, w2), (a3, _) = _tiny_search(0), _tiny_search(0), _tiny_search(1)
    assert all(torch.equal(a1[k], a2[k]) for k in a1) and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert any(not torch.equal(a1[k], a3[k]) for k in a1)
    assert any(not torch.equal(v, torch.zeros_like(v)) for v in a1.values())  # the architecture moved


@pytest.mark.parametrize("estimator", ["unas", "reinforce", "gumbel"])
def test_every_estimator_takes_an_architecture_step_with_the_latency_term(estimator: str) -> None:
    wl = ProxylessSearchWorkload(profile="tiny", options={"width_multiplier": 0.1}, recipe_overrides=SMALL)
    space = ProxylessSpace(WIDTHS["unas"].scaled(0.1), 10, {"widths": "unas", "width_multiplier": 0.1})
    meter = LatencyMeter(space.build_eval, space.key, wl, "cpu", batch_size=2, repeats=2, warmup=1)
    settings = SearchSettings(estimator=estimator, same_alpha_minibatch=True, arch_samples=4, target_latency_ms=0.01,
                              latency_ramp_steps=1, latency_samples=10, arch_lr=0.1)  # fmt: skip
    torch.manual_seed(0)
    search = UnasSearch(space, wl.build_model(), settings, wl.recipe, "cpu", meter)
    stats = search.fit_surrogate()
    assert stats["n_train"] == 8 and math.isfinite(stats["mae_ms"])
    train, held = search_loaders(wl, 0.75, 16, 0)
    optimizer = torch.optim.Adam(search.dist.parameters(), lr=0.1)
    batch, held_batch = next(iter(train)), next(iter(held))
    search.step = 1  # c_t = coeff: the latency term is on
    sample, used, f_value = search.arch_step(batch, held_batch, optimizer)
    assert sample.count == 4 and math.isfinite(f_value) and used[0].shape[0] == min(16, held_batch[0].shape[0])
    assert any(a.abs().sum() > 0 for a in search.dist.alphas) and len(search.trace) == 1


# ---- end to end ------------------------------------------------------------------------------------------------------
def _apply(workload: str, options: dict[str, Any], args: dict[str, str], tmp_path: Path) -> tuple[Any, Any]:
    from workloads import WORKLOADS

    config = RunConfig(workload=workload, compressor="unas", compressor_args=args, workload_options=options,
                       recipe_overrides={k: str(v) for k, v in SMALL.items()})  # fmt: skip
    wl = WORKLOADS.get(workload)(profile="tiny", options=options, recipe_overrides=SMALL)
    compressor = UNAS(UNASConfig.from_strings(args))
    compressor.check_compatible(wl)
    torch.manual_seed(0)
    return compressor.apply(wl.build_model(), RunContext(wl, config, tmp_path)), wl


@pytest.mark.slow
def test_end_to_end_proxyless_with_a_latency_target(tmp_path: Path) -> None:
    args = {"search_epochs": "1", "warmup_epochs": "1", "target_latency_ratio": "0.7", "latency_samples": "10",
            "latency_batch_size": "4", "latency_repeats": "3", "retrain_epochs": "1"}  # fmt: skip
    result, wl = _apply("proxyless_search", {"width_multiplier": 0.1}, args, tmp_path)
    s = result.summary
    assert result.execution == "executed" and isinstance(result.model, ProxylessEvalNetwork)
    assert list(result.model.architecture) == s["architecture"]
    assert s["params"] == sum(p.numel() for p in result.model.parameters())
    assert s["latency"]["target_ms"] == pytest.approx(0.7 * s["latency"]["reference_at_start_ms"])
    assert s["latency"]["found_ms"] > 0 and s["surrogate"]["n_test"] == 2
    assert s["random_search"]["evaluated"] == s["search"]["arch_steps"] > 0
    assert set(s["accuracy"]) == {"found", "reference", "random_search"} == set(result.variants) | {"found"}
    out = result.model.eval()(*wl.example_inputs(2))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@pytest.mark.slow
def test_end_to_end_darts_derives_a_valid_cell_that_trains(tmp_path: Path) -> None:
    args = {"search_epochs": "1", "warmup_epochs": "0", "random_search": "2", "train_reference": "false",
            "eval_options": "layers=3,init_channels=4", "latency_batch_size": "2", "latency_repeats": "2"}  # fmt: skip
    result, wl = _apply("darts_search", {"layers": 3, "init_channels": 4}, args, tmp_path)
    s = result.summary
    assert isinstance(result.model, DartsEvalNetwork) and s["distinct_inputs"] is True
    assert s["architecture"]["normal"] == [list(p) for p in result.model.genotype.normal]
    assert s["settings"]["same_alpha_minibatch"] is False and s["settings"]["alpha_loss_lambda"] == 0.2
    assert s["networks"]["found"]["options"]["layers"] == 3 and set(result.variants) == {"random_search"}
    assert torch.isfinite(result.model.eval()(*wl.example_inputs(2))).all()
