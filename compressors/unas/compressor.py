"""UNAS: differentiable architecture search with an unbiased estimator and a measured-latency objective (Vahdat,
Mallya, Liu, Kautz, CVPR'20, arXiv 1912.07651; behavioural reference NVlabs/unas @cdd19b9).

On a search workload (``darts_search``: the DARTS cell space; ``proxyless_search``: the ProxylessNAS space) ``apply``

1. measures the latency of the space's reference network (DARTS_V2 cell; the MobileNetV2 block ``mic_3x3_e6`` in
   every layer) with the harness meter, which fixes the target when ``target_latency_ratio`` is given;
2. searches (:mod:`compressors.unas.search`) in ``ctx.phase("search")``: weight warm-up, alternating weight and
   architecture updates with the chosen estimator (:mod:`compressors.unas.estimators`) and objective, the latency
   hinge on measured latencies with the ridge surrogate (:mod:`compressors.unas.latency`);
3. derives the discrete architecture (argmax; in the DARTS space two distinct inputs per node unless
   ``distinct_inputs=false``, which is UNAS' own per-slot argmax), runs the random-search baseline on the same
   budget, and trains the found, the reference and the random-search networks from scratch in the matching
   evaluation workload (``darts_eval`` / ``proxyless_eval``) with its recipe, the run's profile, dataset and recipe
   overrides;
4. returns the trained found network (a real, smaller network: ``execution="executed"``) with the reference and
   random-search networks as variants, so the record measures all three on the same meters.

Faithful: the distribution, estimators, objectives, alpha penalty, latency hinge and surrogate, optimiser settings
and schedule shape (PAPERS.md §8); the supernet starts from a fresh initialisation and the official weights-only
warm-up (``init_from_baseline=true`` starts from the run's dense baseline instead: the supernet trained by the harness
under the uniform expectation, which transfers badly to sampled paths on the tiny profile). Differs (recorded in the
summary's ``differences``): the held-out stream is the last 10 % of the training split; measured latencies are
cached per architecture; the timed network is the evaluation network at its evaluation size (the official code times
the search supernet's discrete path); ``--scale_lr`` (multi-GPU learning-rate scaling) is not applied; the tiny
profile uses a larger architecture learning rate and latency coefficient and 200 latency samples. Paper-profile
defaults are the official ones. Tiny-profile caveat: a few epochs on ~1.3k digits train sampled paths of the
supernet only slightly above chance, so the accuracy part of the objective is weak there and the latency term
dominates the choice.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compressors.base import CompressedModel, Compressor, CompressorConfig, CompressorInfo, IncompatibleWorkloadError
from compressors.unas.distributions import DartsSpace, ProxylessSpace, architecture_id
from compressors.unas.estimators import ESTIMATORS
from compressors.unas.latency import CLOCKS, LatencyMeter
from compressors.unas.search import SearchSettings, UnasSearch, random_search, search_loaders
from harness.meters.flops import count_flops
from harness.progress import say
from harness.values import parse_value

SEARCH_WORKLOADS = {"darts_search": "darts_eval", "proxyless_search": "proxyless_eval"}
OBJECTIVES = ("train", "gap")
# Official defaults per space (darts/train_search.py and proxylessnas/train_search.py argparse + commands.sh).
PAPER = {
    "darts": {"epochs": 85, "warmup_epochs": 15, "soften_eps": 0.0, "same_alpha": False, "alpha_loss": 0.2},
    "proxyless": {"epochs": 15, "warmup_epochs": 20, "soften_eps": 0.08, "same_alpha": True, "alpha_loss": 0.0},
}
# commands.sh runs the ProxylessNAS and ImageNet searches with --same_alpha_minibatch on 8 GPUs: 8 architectures a step.
OFFICIAL_PROCESSES = 8
PAPER_ARCH_LR, PAPER_LATENCY_SAMPLES, PAPER_LATENCY_ITER = 1e-3, 10_000, 30_000
ARCH_LR_MIN_RATIO = 3e-4 / 1e-3  # arch_learning_rate_min / arch_learning_rate
# Tiny CPU profile (this suite's choice, recorded): ~40 architecture steps need a larger arch lr to move q, and a
# held-out R^2 near 0.9 of the ridge surrogate takes ~200 measured architectures in the ProxylessNAS space.
# With ~40 steps the REINFORCE noise of a barely trained supernet's loss swamps a 0.1 latency coefficient, so the
# tiny profile weighs the hinge 10x (the paper's 0.1 is for ~10^5 steps on ImageNet).
TINY = {"epochs": 2, "warmup_epochs": 1, "arch_lr": 0.1, "latency_samples": 200, "latency_coeff": 1.0}
PAPER_LATENCY_COEFF = 0.1
MOBILENET_V2_BLOCK = "mic_3x3_e6"


@dataclass
class UNASConfig(CompressorConfig):
    """``0`` means "the profile's default" for epochs, learning rates and counts (resolved values are recorded).

    ``target_latency_ms`` (absolute) or ``target_latency_ratio`` (a fraction of the reference network's measured
    latency) turns the latency term on; both 0 = no latency term. ``random_search``: architectures of the baseline
    (0 = the search's number of architecture steps, -1 = no baseline). ``eval_options``: ``key=value`` pairs (comma
    separated) for the evaluation workload (DARTS default: its tiny options at tiny profile, its paper size at paper).
    """

    version = 1
    estimator: str = "unas"
    objective: str = "gap"
    gap_lambda: float = 0.5
    alpha_loss_lambda: float = -1.0  # -1 = the space's default (DARTS 0.2, ProxylessNAS 0: no slot pairs)
    target_latency_ms: float = 0.0
    target_latency_ratio: float = 0.0
    latency_coeff: float = 0.0  # 0 = 0.1 (paper) / 1.0 (tiny)
    latency_iter: int = 0  # ramp of c_t in arch steps; 0 = 30000 (paper) / a third of the arch steps (tiny)
    latency_batch_size: int = 24
    latency_repeats: int = 10
    latency_warmup: int = 5
    latency_samples: int = 0
    latency_backend: str = ""  # "" = the run's first backend
    latency_clock: str = "wall"  # wall | thread (CPU time of the calling thread: for a CPU shared with other jobs)
    search_epochs: int = 0
    warmup_epochs: int = -1  # -1 = the profile's default; 0 = no warm-up
    arch_lr: float = 0.0
    arch_lr_min: float = 0.0  # 0 = 0.3 x arch_lr (3e-4 / 1e-3)
    arch_weight_decay: float = 1e-6
    temperature: float = 0.4
    soften_eps: float = -1.0  # -1 = the space's default (DARTS 0, ProxylessNAS 0.08)
    same_alpha_minibatch: str = "auto"  # auto = the official command (DARTS: per example; ProxylessNAS: per batch)
    arch_samples: int = 0  # with same_alpha_minibatch: architectures per step; 0 = 8 (the official 8 processes)
    train_portion: float = 0.9
    reinforce_baseline_decay: float = 0.1
    distinct_inputs: bool = True
    init_from_baseline: bool = False  # True: start from the dense baseline supernet (uniform-weight training)
    random_search: int = 0
    train_reference: bool = True
    retrain_epochs: int = 0  # 0 = the evaluation recipe's epochs
    eval_options: str = ""
    variants: bool = True

    def __post_init__(self) -> None:
        choices = {"estimator": ESTIMATORS, "objective": OBJECTIVES, "same_alpha_minibatch": ("auto", "true", "false"),
                   "latency_clock": CLOCKS}  # fmt: skip
        for name, valid in choices.items():
            if getattr(self, name) not in valid:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(valid)}")
        for name in ("target_latency_ms", "target_latency_ratio", "latency_coeff", "gap_lambda", "arch_lr",
                     "arch_lr_min", "arch_weight_decay"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.target_latency_ms > 0 and self.target_latency_ratio > 0:
            raise ValueError("set target_latency_ms or target_latency_ratio, not both (0 turns one off)")
        for name in ("latency_iter", "latency_samples", "search_epochs", "retrain_epochs", "arch_samples"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0 = default)")
        for name in ("latency_batch_size", "latency_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if self.warmup_epochs < -1 or self.random_search < -1 or self.latency_warmup < 0:
            raise ValueError("warmup_epochs and random_search take -1 (default / off) or >= 0; latency_warmup >= 0")
        if self.latency_samples and self.latency_samples < 10:
            raise ValueError(f"latency_samples={self.latency_samples} is too few to fit and hold out; use >= 10")
        if not 0 < self.train_portion < 1:
            raise ValueError(f"train_portion={self.train_portion} must be in (0, 1) (UNAS: 0.9)")
        if self.temperature <= 0 or not 0 <= self.reinforce_baseline_decay < 1:
            raise ValueError("temperature must be > 0 and reinforce_baseline_decay in [0, 1)")
        if self.alpha_loss_lambda < 0 and self.alpha_loss_lambda != -1 or self.soften_eps < 0 and self.soften_eps != -1:
            raise ValueError("alpha_loss_lambda and soften_eps take -1 (the space's default) or values >= 0")

    def resolved(self, profile: str, space: str, recipe: Any, steps_per_epoch: int, seed: int) -> SearchSettings:
        tiny, paper = profile == "tiny", PAPER[space]
        epochs = self.search_epochs or (TINY["epochs"] if tiny else paper["epochs"])
        arch_lr = self.arch_lr or (TINY["arch_lr"] if tiny else PAPER_ARCH_LR)
        same = paper["same_alpha"] if self.same_alpha_minibatch == "auto" else self.same_alpha_minibatch == "true"
        ramp = self.latency_iter or (max(1, epochs * steps_per_epoch // 3) if tiny else PAPER_LATENCY_ITER)
        return SearchSettings(
            estimator=self.estimator, objective=self.objective, gap_lambda=self.gap_lambda,
            alpha_loss_lambda=paper["alpha_loss"] if self.alpha_loss_lambda < 0 else self.alpha_loss_lambda,
            epochs=epochs,
            warmup_epochs=self.warmup_epochs if self.warmup_epochs >= 0 else (
                TINY["warmup_epochs"] if tiny else paper["warmup_epochs"]),
            arch_lr=arch_lr, arch_lr_min=self.arch_lr_min or ARCH_LR_MIN_RATIO * arch_lr,
            arch_weight_decay=self.arch_weight_decay, temperature=self.temperature,
            soften_eps=paper["soften_eps"] if self.soften_eps < 0 else self.soften_eps,
            same_alpha_minibatch=same, arch_samples=self.arch_samples or OFFICIAL_PROCESSES,
            train_portion=self.train_portion, batch_size=recipe.batch_size,
            latency_coeff=self.latency_coeff or (TINY["latency_coeff"] if tiny else PAPER_LATENCY_COEFF),
            latency_ramp_steps=ramp,
            latency_samples=self.latency_samples or (TINY["latency_samples"] if tiny else PAPER_LATENCY_SAMPLES),
            baseline_decay=self.reinforce_baseline_decay, seed=seed,
        )  # fmt: skip


def parse_eval_options(text: str, options_cls: type, fixed: str) -> dict[str, Any]:
    """``"layers=8,init_channels=16"`` -> typed dict; the architecture option itself is set by the search."""
    hints = typing.get_type_hints(options_cls)
    out: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in hints or key == fixed:
            valid = sorted(k for k in hints if k != fixed)
            raise ValueError(f"eval_options item {item!r}: expected key=value with key in {valid} ({fixed} is set "
                             f"by the search)")  # fmt: skip
        out[key] = parse_value(value.strip(), hints[key], f"eval_options.{key}")
    return out


def _eval_class(search_name: str) -> Any:
    from workloads import WORKLOADS

    return WORKLOADS.get(SEARCH_WORKLOADS[search_name])


def eval_options(workload: Any, text: str) -> dict[str, Any]:
    """The evaluation workload's options for this search (without the architecture), validated."""
    cls = _eval_class(workload.info.name)
    if workload.info.name == "proxyless_search":
        base = {"widths": workload.options.widths, "width_multiplier": workload.options.width_multiplier}
        fixed = "architecture"
    else:
        base = dict(cls.tiny_options) if workload.profile == "tiny" else {}
        fixed = "genotype"
    merged = {**base, **parse_eval_options(text, cls.Options, fixed)}
    resolved = cls.Options(**merged).to_dict()
    resolved.pop(fixed)
    return resolved


def make_space(workload: Any, options: dict[str, Any]) -> DartsSpace | ProxylessSpace:
    if workload.info.name == "darts_search":
        o = workload.options
        from workloads.nas.darts_ops import UNAS_PRIMITIVES

        return DartsSpace(o.nodes, UNAS_PRIMITIVES[: o.num_ops], workload.num_classes, options)
    from workloads.nas.proxyless import WIDTHS

    widths = WIDTHS[workload.options.widths].scaled(workload.options.width_multiplier)
    return ProxylessSpace(widths, workload.num_classes, options)


def reference_architecture(space: DartsSpace | ProxylessSpace) -> Any:
    """DARTS space: the DARTS_V2 cell; ProxylessNAS space: MobileNetV2's block (3x3, expansion 6) in every layer."""
    if isinstance(space, DartsSpace):
        from workloads.nas.darts import get_genotype

        return get_genotype("DARTS_V2")
    return tuple(MOBILENET_V2_BLOCK for _ in space.plan)


def eval_workload(ctx: Any, space: DartsSpace | ProxylessSpace, architecture: Any, options: dict[str, Any]) -> Any:
    """The evaluation workload of ``architecture``: same profile, dataset, data root and recipe overrides."""
    from harness.config import convert_recipe_overrides

    cls = _eval_class(ctx.workload.info.name)
    if isinstance(space, DartsSpace):
        from workloads.nas.darts import GENOTYPE_SOURCES, GENOTYPES

        name = next((k for k, g in GENOTYPES.items() if g == architecture), None)
        if name is None:  # darts_eval takes registered names: register the found cell for this process
            name = f"UNAS_FOUND_{architecture_id(space, architecture)}"
            GENOTYPES[name] = architecture
            GENOTYPE_SOURCES[name] = "found by compressors/unas in this run (genotype in the run's summary)"
        arch_option = {"genotype": name}
    else:
        arch_option = {"architecture": ",".join(architecture)}
    return cls(
        profile=ctx.workload.profile, dataset=ctx.workload.dataset, data_root=ctx.workload.data_root,
        options={**options, **arch_option}, recipe_overrides=convert_recipe_overrides(ctx.config.recipe_overrides),
    )  # fmt: skip


class UNAS(Compressor):
    info = CompressorInfo(
        name="unas",
        paper="1912.07651",
        kind="nas",
        needs_data=True,
        supports=("cnn",),
        description="UNAS: unbiased REINFORCE+relaxation search in the DARTS / ProxylessNAS spaces, measured latency",
    )
    Config = UNASConfig

    def check_compatible(self, workload: Any) -> None:
        if workload.info.name not in SEARCH_WORKLOADS:
            raise IncompatibleWorkloadError(
                f"unas searches an architecture and needs a search-space workload; {workload.info.name!r} is not one. "
                f"Use --workload darts_search (DARTS cell space) or proxyless_search (ProxylessNAS space); "
                f"darts_eval / proxyless_eval train a given architecture."
            )
        super().check_compatible(workload)
        eval_options(workload, self.config.eval_options)  # type: ignore[attr-defined]  # bad options fail now

    def apply(self, model: nn.Module, ctx: Any) -> CompressedModel:
        cfg: UNASConfig = self.config  # type: ignore[assignment]
        workload, device, seed = ctx.workload, ctx.device, ctx.seed
        options = eval_options(workload, cfg.eval_options)
        space = make_space(workload, options)
        train, held_out = search_loaders(workload, cfg.train_portion, workload.recipe.batch_size, seed)
        settings = cfg.resolved(workload.profile, space.name, workload.recipe, len(train), seed)
        meter = LatencyMeter(
            space.build_eval, space.key, workload, device, cfg.latency_backend or ctx.config.backends[0],
            cfg.latency_batch_size, cfg.latency_repeats, cfg.latency_warmup, cfg.latency_clock,
        )  # fmt: skip
        final_repeats = max(50, cfg.latency_repeats)
        reference = reference_architecture(space)
        with ctx.phase("reference-latency") as entry:
            ref_untrained = _p50(meter, _built(space, reference, seed), final_repeats)
            entry["latency_ms"] = ref_untrained
        settings.target_latency_ms = cfg.target_latency_ms or cfg.target_latency_ratio * ref_untrained
        ctx.log(f"search in the {space.name} space, estimator {cfg.estimator}, objective {cfg.objective}, "
                f"target latency {settings.target_latency_ms:.3f} ms (reference {ref_untrained:.3f} ms)")  # fmt: skip
        torch.manual_seed(seed)
        supernet = model if cfg.init_from_baseline else workload.build_model()
        supernet.to(device)
        search = UnasSearch(space, supernet, settings, workload.recipe, device, meter)
        start = time.perf_counter()
        with ctx.phase("search") as entry:
            result = search.run(train, held_out)
            entry.update(arch_steps=result.arch_steps, seconds_by_stage=result.seconds)
        found = space.derive(result.alphas, cfg.distinct_inputs)
        search_seconds = time.perf_counter() - start
        rs = None
        if cfg.random_search >= 0:
            with ctx.phase("random-search") as entry:
                count = cfg.random_search or result.arch_steps
                rs = random_search(space, supernet, count, held_out, device, torch.Generator().manual_seed(seed + 1),
                                   meter, settings.target_latency_ms)  # fmt: skip
                entry["evaluated"] = count
        nets = {"found": found, **({"reference": reference} if cfg.train_reference else {})}
        if rs is not None:
            nets["random_search"] = rs["architecture"]
        trained = {k: self._train(ctx, space, arch, options, k, seed + 101 * (i + 1), cfg)
                   for i, (k, arch) in enumerate(nets.items())}  # fmt: skip
        figures = {k: self._figures(space, trained[k], meter, final_repeats, device) for k in trained}
        summary = self._summary(cfg, settings, space, result, nets, figures, rs, meter, ref_untrained, search_seconds)
        variants = {k: trained[k][0] for k in trained if k != "found"} if cfg.variants else {}
        return CompressedModel(model=trained["found"][0], execution="executed", summary=summary, variants=variants)

    def _train(self, ctx: Any, space: Any, arch: Any, options: dict[str, Any], name: str, seed: int,
               cfg: UNASConfig) -> tuple[nn.Module, Any, dict[str, float]]:  # fmt: skip
        wl = eval_workload(ctx, space, arch, options)
        torch.manual_seed(seed)
        net = wl.build_model()
        with ctx.phase(f"retrain-{name}") as entry:
            say(f"[unas] training the {name.replace('_', '-')} network from scratch in {wl.info.name}")
            ctx.trainer(f"unas-{name}", workload=wl).fit(net, epochs=cfg.retrain_epochs or None)
            net.eval()
            entry["metrics"] = wl.evaluate(net, wl.dataloader("val", shuffle=False), ctx.device)
        return net, wl, entry["metrics"]

    def _figures(self, space: Any, trained: tuple[nn.Module, Any, dict[str, float]], meter: LatencyMeter, repeats: int,
                 device: str) -> dict[str, Any]:  # fmt: skip
        net, wl, metrics = trained
        params = sum(p.numel() for n, p in net.named_parameters() if "auxiliary" not in n)
        return {
            "workload": wl.info.name,
            "options": wl.options.to_dict(),
            "params": params,
            "flops": count_flops(net, wl.example_inputs(1, device))["flops"],
            "latency_ms": _p50(meter, net, repeats),
            "metric": wl.info.metric,
            wl.info.metric: metrics[wl.info.metric],
            "metrics": {k: v for k, v in metrics.items() if k != "samples"},
        }

    def _summary(self, cfg: UNASConfig, settings: SearchSettings, space: Any, result: Any, nets: dict[str, Any],
                 figures: dict[str, Any], rs: dict[str, Any] | None, meter: LatencyMeter, ref_untrained: float,
                 search_seconds: float) -> dict[str, Any]:  # fmt: skip
        darts = isinstance(space, DartsSpace)
        random = None
        if rs is not None:
            random = {**{k: v for k, v in rs.items() if k != "architecture"}}
            random["architecture"] = space.describe(rs["architecture"])
        return {
            "space": space.name,
            "estimator": cfg.estimator,
            "objective": cfg.objective,
            "settings": dataclasses.asdict(settings),
            "architecture": space.describe(nets["found"]),
            "distinct_inputs": DartsSpace.distinct_inputs(nets["found"]) if darts else None,
            "networks": {k: {"architecture": space.describe(nets[k]), **v} for k, v in figures.items()},
            "params": figures["found"]["params"],
            "flops": figures["found"]["flops"],
            "accuracy": {k: v[v["metric"]] for k, v in figures.items()},
            "latency": _latency_summary(settings.target_latency_ms, figures, meter, ref_untrained),
            "surrogate": result.surrogate or {"r2": None, "mae_ms": None, "reason": "no latency term (target 0)"},
            "random_search": random,
            "search": {
                "arch_steps": result.arch_steps,
                "architectures_sampled": result.architectures_sampled,
                "seconds": search_seconds,
                "seconds_by_stage": result.seconds,
                "history": result.history,
                "final_probs": result.probs,
                "latency_measurements": len(result.latency_trace),
                "surrogate_mae_during_search_ms": _trace_mae(result.latency_trace),
                "latency_trace": result.latency_trace[-200:],
            },
            "reference": "DARTS_V2 cell" if darts else "MobileNetV2's block (mic_3x3_e6) in every layer",
            "differences": _differences(cfg),
            "execution_note": "executed: the found network is built and trained as a plain smaller network",
        }


def _latency_summary(target: float, figures: dict[str, Any], meter: LatencyMeter, ref_untrained: float) -> dict:
    """Found vs target and vs the reference; the last two were timed back to back at the end of the run, so their
    ratio is robust to a change of machine load since the target was fixed."""
    found = figures["found"]["latency_ms"]
    reference = figures.get("reference", {}).get("latency_ms")
    return {
        "target_ms": target or None,
        "found_ms": found,
        "reference_ms": reference,
        "reference_at_start_ms": ref_untrained,
        "found_over_target": found / target if target else None,
        "meets_target_within_10pct": found <= 1.1 * target if target else None,
        "found_over_reference": found / reference if reference else None,
        "random_search_ms": figures.get("random_search", {}).get("latency_ms"),
        "meter": meter.describe(),
    }


def _trace_mae(trace: list[dict[str, float]]) -> float | None:
    """Mean |measured - surrogate| of the architectures timed during the search (UNAS logs latency_pred_loss)."""
    pairs = [(t["measured_ms"], t["surrogate_ms"]) for t in trace if "surrogate_ms" in t]
    return sum(abs(a - b) for a, b in pairs) / len(pairs) if pairs else None


def _differences(cfg: UNASConfig) -> list[str]:
    out = [
        "held-out stream = the last (1 - train_portion) of the training split (UNAS: same, --train_portion 0.9)",
        "measured latency is cached per architecture; the timed network is the evaluation network",
        "--scale_lr (multi-GPU learning-rate scaling) not applied",
    ]
    if cfg.init_from_baseline:
        out.append("weights start from the run's dense baseline (the supernet trained under the uniform distribution)")
    return out


def _built(space: Any, architecture: Any, seed: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return space.build_eval(architecture)


def _p50(meter: LatencyMeter, model: nn.Module, repeats: int) -> float:
    return float(meter.time_model(model.to(meter.device), repeats)["host_latency"]["p50"])
