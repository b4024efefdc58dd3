"""DSD: Dense-Sparse-Dense training (Han et al., ICLR'17, arXiv 1607.04381), and its LLR control.

Algorithm 1 of the paper, after the dense baseline D (trained by the harness):

- S: per layer l, remove the ``k_l = floor(s * N_l)`` weights of smallest magnitude (conv, linear and recurrent
  weights; biases and normalisation parameters are never pruned), then train the sparse net with the dense recipe,
  ``W <- W - η ∇L(W); W <- W ⊙ Mask`` (:class:`compressors.masks.MaskCallback` masks gradients after backward and
  weights after every step, so weight decay and momentum cannot revive pruned weights).
- D': drop the masks; the pruned weights restart at exactly 0; retrain the full dense net at 0.1x the recipe's
  initial learning rate (paper §2: the sparse net is already at a good local minimum).
- Optional: repeat S -> D' (``iterations=2`` is the paper's DSDSD used for DeepSpeech-2).

Sparsity defaults follow the paper's choice per network type, read from the workload's ``info.kind``: 30 % for CNNs
(GoogLeNet, VGG-16, ResNet-18/50), 50 % for speech (DeepSpeech), 80 % for RNNs (NeuralTalk LSTM); other kinds
(mlp, transformer) default to 30 %.

Epochs per phase: the paper trains each phase "to convergence" and gives no per-network epoch table that the
official repository (Caffe prototxts only) confirms. Defaults: S runs the workload recipe's epochs with the recipe's
learning-rate schedule (the paper keeps the dense hyper-parameters in S), D' runs the recipe's epochs again at
0.1x the initial learning rate with the same schedule shape. Both are configurable (``sparse_epochs``,
``redense_epochs``).

LLR ("lower learning rate") control, paper §3: continue training the dense baseline at the D' learning rate for the
same total number of epochs that DSD spends after D. It isolates the effect of the sparse phase from that of the
extra training at a low rate. Both compressors return a dense model: DSD changes accuracy, not cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from torch import nn

from compressors import COMPRESSORS
from compressors.base import CompressedModel, Compressor, CompressorConfig, CompressorInfo
from compressors.masks import MaskCallback, MaskSet, global_sparsity, layer_sparsity
from harness.context import RunContext
from workloads.base import Recipe

# Paper §3: sparsity per network type (GoogLeNet/VGG/ResNet 30 %, DeepSpeech 50 %, NeuralTalk LSTM 80 %).
DEFAULT_SPARSITY = {"cnn": 0.3, "speech": 0.5, "rnn": 0.8}
FALLBACK_SPARSITY = 0.3
DENSE_NOTE = "final model is dense: DSD changes accuracy, not cost"


@dataclass
class DSDConfig(CompressorConfig):
    """Settings of DSD and of its LLR control (the same fields, so that a control run matches a DSD run).

    Attributes:
        sparsity: fraction of each layer's weights removed in S; ``None`` picks the paper's value for the workload
            kind (cnn 0.3, speech 0.5, rnn 0.8, otherwise 0.3).
        sparse_epochs: epochs of each S phase; ``None`` = the workload recipe's epochs.
        redense_epochs: epochs of each D' phase; ``None`` = the workload recipe's epochs.
        redense_lr_scale: D' learning rate as a multiple of the recipe's initial rate (paper: 0.1).
        iterations: number of S -> D' cycles (1 = DSD, 2 = DSDSD).
    """

    sparsity: float | None = None
    sparse_epochs: int | None = None
    redense_epochs: int | None = None
    redense_lr_scale: float = 0.1
    iterations: int = 1

    def __post_init__(self) -> None:
        if self.sparsity is not None and not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations}")
        if self.redense_lr_scale <= 0:
            raise ValueError(f"redense_lr_scale must be > 0, got {self.redense_lr_scale}")

    def resolved(self, kind: str, recipe: Recipe) -> dict[str, Any]:
        """Concrete values for a workload kind and recipe."""
        return {
            "sparsity": self.sparsity if self.sparsity is not None else DEFAULT_SPARSITY.get(kind, FALLBACK_SPARSITY),
            "sparse_epochs": recipe.epochs if self.sparse_epochs is None else self.sparse_epochs,
            "redense_epochs": recipe.epochs if self.redense_epochs is None else self.redense_epochs,
            "redense_lr": recipe.lr * self.redense_lr_scale,
            "iterations": self.iterations,
        }


def _phase_record(name: str, ctx: RunContext, model: nn.Module, entry: dict[str, Any]) -> dict[str, Any]:
    """Evaluate after a phase and fill the ctx.phase entry (seconds are added when the phase closes)."""
    metrics = ctx.evaluate(model)
    entry.update({"metrics": metrics, "sparsity": global_sparsity(model)})
    return {"phase": name, **metrics, "sparsity": entry["sparsity"]}


@COMPRESSORS.register("dsd")
class DSD(Compressor):
    """Dense -> Sparse -> re-Dense training (arXiv 1607.04381, Algorithm 1)."""

    info = CompressorInfo(
        name="dsd",
        paper="1607.04381",
        kind="training",
        needs_data=True,
        supports=("cnn", "mlp", "rnn", "transformer", "speech"),
        description="dense-sparse-dense training: magnitude pruning, sparse retraining, dense retraining at 0.1x lr",
    )
    Config = DSDConfig

    def apply(self, model: nn.Module, ctx: RunContext) -> CompressedModel:
        cfg: DSDConfig = self.config  # type: ignore[assignment]
        recipe = ctx.workload.recipe
        plan = cfg.resolved(ctx.workload.info.kind, recipe)
        history: list[dict[str, Any]] = []
        with ctx.phase("D") as entry:
            history.append(_phase_record("D", ctx, model, entry))
        per_layer_after_s: dict[str, float] = {}
        for it in range(1, plan["iterations"] + 1):
            masks = MaskSet.magnitude(model, plan["sparsity"])
            with ctx.phase(f"S{it}") as entry:
                ctx.log(f"S{it}: pruning {plan['sparsity']:.0%} of each layer, {plan['sparse_epochs']} epochs")
                ctx.trainer(f"sparse{it}", recipe=recipe, callbacks=[MaskCallback(masks)]).fit(
                    model, epochs=plan["sparse_epochs"]
                )
                masks.apply_to_weights(model)
                per_layer_after_s = layer_sparsity(model)
                history.append(_phase_record(f"S{it}", ctx, model, entry))
            with ctx.phase(f"D'{it}") as entry:
                ctx.log(f"D'{it}: masks dropped, {plan['redense_epochs']} epochs at lr {plan['redense_lr']:.3g}")
                ctx.trainer(f"redense{it}", recipe=recipe.replace(lr=plan["redense_lr"])).fit(
                    model, epochs=plan["redense_epochs"]
                )
                history.append(_phase_record(f"D'{it}", ctx, model, entry))
        summary = _summary(plan, history, ctx, per_layer_after_s)
        return CompressedModel(model=model, execution="dense", summary=summary)


@COMPRESSORS.register("llr")
class LLR(Compressor):
    """DSD's control: continue dense training at the D' learning rate for DSD's total post-baseline epochs."""

    info = CompressorInfo(
        name="llr",
        paper="1607.04381",
        kind="training",
        needs_data=True,
        supports=("cnn", "mlp", "rnn", "transformer", "speech"),
        description="DSD control: dense training continued at 0.1x lr for the same number of epochs as DSD",
    )
    Config = DSDConfig

    def apply(self, model: nn.Module, ctx: RunContext) -> CompressedModel:
        cfg: DSDConfig = self.config  # type: ignore[assignment]
        recipe = ctx.workload.recipe
        plan = cfg.resolved(ctx.workload.info.kind, recipe)
        epochs = plan["iterations"] * (plan["sparse_epochs"] + plan["redense_epochs"])
        history: list[dict[str, Any]] = []
        with ctx.phase("D") as entry:
            history.append(_phase_record("D", ctx, model, entry))
        with ctx.phase("LLR") as entry:
            ctx.log(f"LLR: {epochs} dense epochs at lr {plan['redense_lr']:.3g}")
            ctx.trainer("llr", recipe=recipe.replace(lr=plan["redense_lr"])).fit(model, epochs=epochs)
            history.append(_phase_record("LLR", ctx, model, entry))
        summary = _summary({**plan, "llr_epochs": epochs}, history, ctx, {})
        return CompressedModel(model=model, execution="dense", summary=summary)


def _summary(
    plan: dict[str, Any], history: list[dict[str, Any]], ctx: RunContext, per_layer: dict[str, float]
) -> dict[str, Any]:
    seconds = {p["name"]: p.get("seconds", math.nan) for p in ctx.phases}
    for row in history:
        row["seconds"] = seconds.get(row["phase"], math.nan)
    summary: dict[str, Any] = {"plan": plan, "phases": history, "execution_note": DENSE_NOTE}
    if per_layer:
        summary["sparsity_after_last_S"] = per_layer
    metric = ctx.workload.info.metric
    if history and metric in history[0] and metric in history[-1]:
        summary[f"{metric}_change_vs_D"] = history[-1][metric] - history[0][metric]
    return summary
