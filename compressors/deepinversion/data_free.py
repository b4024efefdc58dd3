"""``--train-data deepinversion|noise``: hand any data-needing compressor a synthesized training set.

The harness calls :func:`check_data_free` in pre-flight and :func:`data_free_workload` after the dense baseline is
trained: the baseline is inverted (DeepInversion without ADI: there is no student to compete with before the
compression) and the compressor then sees a :class:`SyntheticTrainData` whose training split is the synthesized
images labelled with their synthesis targets, while validation, metric and measurement inputs stay real. This is
the paper's data-free pruning (arXiv 1912.08795 section 4.2: Taylor-FO importance and fine-tuning on DI images).
Settings come from ``--set synthesis.<key>=...`` (the synthesis keys of ``deepinversion``'s Config).
"""

from __future__ import annotations

import time
from typing import Any

from torch import nn

from compressors.deepinversion.compressor import (
    DeepInversionConfig,
    noise_images,
    require_batchnorm,
    save_grid,
    stack,
    synthesis_summary,
    synthesize_set,
)
from compressors.deepinversion.data_source import SyntheticTrainData
from compressors.deepinversion.synthesis import balanced_targets

SYNTHESIS_KEYS = (
    "setting",
    "iterations",
    "batch_size",
    "batches",
    "lr",
    "r_feature",
    "first_bn_multiplier",
    "tv_l2",
    "jitter",
)


def synthesis_config(values: dict[str, Any]) -> DeepInversionConfig:
    """The synthesis settings from ``synthesis.<key>`` strings; other keys are refused with the valid ones."""
    unknown = sorted(set(values) - set(SYNTHESIS_KEYS))
    if unknown:
        raise ValueError(
            f"Unknown synthesis key(s) {unknown}; valid: {', '.join(f'synthesis.{k}' for k in SYNTHESIS_KEYS)}"
        )
    return DeepInversionConfig.from_strings({k: str(v) for k, v in values.items()})  # type: ignore[return-value]


def check_data_free(train_data: str, workload: Any, compressor: Any, synthesis_args: dict[str, Any]) -> None:
    """Pre-flight: the compressor trains on data, the workload is an image classifier with BN, the keys are valid."""
    if train_data == "real":
        if synthesis_args:
            raise ValueError("synthesis.<key> settings only apply with --train-data deepinversion (or noise)")
        return
    if not compressor.info.needs_data or compressor.info.kind == "data-free":
        raise ValueError(
            f"--train-data {train_data} replaces a compressor's training data, but {compressor.info.name!r} "
            f"{'makes its own' if compressor.info.kind == 'data-free' else 'uses none'}; drop --train-data"
        )
    if workload.info.task != "image-classification":
        raise ValueError(
            f"--train-data {train_data} synthesizes images; {workload.info.name!r} is not an image classifier"
        )
    synthesis_config(synthesis_args)
    if train_data == "deepinversion":
        require_batchnorm(workload.build_model(), f"workload {workload.info.name!r}")


def data_free_workload(
    ctx: Any, baseline: nn.Module, train_data: str, synthesis_args: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """(the workload with a synthesized training split, its summary for the record)."""
    workload = ctx.workload
    cfg = synthesis_config(synthesis_args)
    settings, batches = cfg.resolved_settings(workload.profile, workload.image_size)
    count = settings.batch_size * batches
    if train_data == "noise":
        images, labels = noise_images(workload, count, ctx.seed), balanced_targets(count, workload.num_classes)
        return SyntheticTrainData(workload, images, labels, source="noise"), {"source": "noise", "images": count}
    teacher = baseline.to(ctx.device).eval()
    start = time.perf_counter()
    results = synthesize_set(workload, teacher, settings, batches, ctx.seed, ctx.device, phase=ctx.phase)
    summary = {"source": "deepinversion", **synthesis_summary(results, settings, time.perf_counter() - start, workload)}
    images, labels = stack(results)
    summary["images_grid"] = save_grid(images, workload, ctx.run_dir / "synthesized.png", 64)
    return SyntheticTrainData(workload, images, labels, source="deepinversion"), summary
