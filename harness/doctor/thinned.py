"""Physically thinned models for the GPU claims: a ResNet-50 with 45 % of its FLOPs removed by channel pruning.

The channels go the way Taylor pruning (arXiv 1906.10771) removes them in this suite: gate groups from
Torch-Pruning's dependency graph (:class:`compressors.taylor_gates.GateSet`; a ResNet stage's residual stream is one
group), gates folded into the weights, then :func:`compressors.thinning.thin` removes the channels. Which channels go
differs from the paper: timing needs no trained weights, so the model is an untrained torchvision ResNet-50 and
every group keeps the same fraction of its channels (those whose root filters have the largest L1 norm), rounded up
to a multiple of 8 (so that no layer gets a width the GPU kernels handle badly); the fraction is the largest whose
predicted FLOPs reduction (:class:`compressors.thinning.CostModel`) reaches the target, and the reduction is then
measured on the thinned model with FlopCounterMode. Each step that needs the pair builds it (never a pickle on disk).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

TARGET_REDUCTION = 0.45
CHANNEL_MULTIPLE = 8
IMAGE_SIZE = 224


def thin_with_masks(
    dense: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    choose: Callable[[nn.Module, list[Any]], list[torch.Tensor]],
) -> tuple[nn.Module, nn.Module]:
    """(masked, thinned): a copy with the chosen channels zeroed at the dense shape, and one with them removed.

    ``choose(gated_model, groups)`` returns one boolean vector per gate group: True = remove the channel.
    """
    from compressors.taylor_gates import GateSet
    from compressors.thinning import thin

    masked = copy.deepcopy(dense).eval()
    gates = GateSet(masked, example_inputs)
    pruned = choose(masked, gates.groups)
    for index, mask in enumerate(pruned):
        gates.set_pruned(index, mask)
    gates.fold()
    thinned = thin(copy.deepcopy(masked), gates.groups, pruned, example_inputs).eval()
    return masked, thinned


def keep_masks(model: nn.Module, groups: list[Any], fraction: float, multiple: int) -> list[torch.Tensor]:
    """Per group, keep ``ceil(fraction * size)`` channels rounded up to ``multiple`` (largest root-filter L1 norm)."""
    modules = dict(model.named_modules())
    kept = []
    for group in groups:
        keep = min(group.size, max(multiple, math.ceil(fraction * group.size / multiple) * multiple))
        norms = modules[group.name].weight.detach().abs().flatten(1).sum(dim=1)
        mask = torch.zeros(group.size, dtype=torch.bool)
        mask[torch.topk(norms.cpu(), keep).indices] = True
        kept.append(mask)
    return kept


def search_fraction(
    model: nn.Module, groups: list[Any], example_inputs: tuple[torch.Tensor, ...], target: float, multiple: int
) -> tuple[float, list[torch.Tensor], float]:
    """(fraction, keep masks, predicted FLOPs reduction): the largest kept fraction that removes >= ``target``."""
    from compressors.thinning import CostModel

    cost = CostModel(model, groups, example_inputs)
    low, high = 0.0, 1.0  # reduction(low) >= target > reduction(high)
    for _ in range(24):
        middle = (low + high) / 2
        if cost.reduction(keep_masks(model, groups, middle, multiple))["flops"] >= target:
            low = middle
        else:
            high = middle
    kept = keep_masks(model, groups, low, multiple)
    return low, kept, cost.reduction(kept)["flops"]


def build_thinned(
    dense: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    target: float = TARGET_REDUCTION,
    multiple: int = CHANNEL_MULTIPLE,
) -> tuple[nn.Module, dict[str, Any]]:
    """The thinned copy of ``dense`` with >= ``target`` of its FLOPs removed, and how it was made."""
    from harness.meters.flops import count_flops

    found: dict[str, Any] = {}

    def choose(model: nn.Module, groups: list[Any]) -> list[torch.Tensor]:
        fraction, kept, predicted = search_fraction(model, groups, example_inputs, target, multiple)
        found.update(keep_fraction=fraction, predicted_reduction=predicted, groups=len(groups))
        return [~mask for mask in kept]

    _, thinned = thin_with_masks(dense, example_inputs, choose)
    dense_flops = count_flops(dense, example_inputs)["flops"]
    thinned_flops = count_flops(thinned, example_inputs)["flops"]
    params = [sum(p.numel() for p in m.parameters()) for m in (dense, thinned)]
    return thinned, {
        **found,
        "target_reduction": target,
        "channel_multiple": multiple,
        "dense_flops": dense_flops,
        "thinned_flops": thinned_flops,
        "flops_reduction": 1.0 - thinned_flops / dense_flops,
        "ideal_speedup": dense_flops / thinned_flops,
        "dense_params": params[0],
        "thinned_params": params[1],
        "input_shape": list(example_inputs[0].shape),
        "weights": "untrained torchvision initialisation, seed 0 (timing only)",
    }


def resnet50_workload(image_size: int = IMAGE_SIZE) -> Any:
    """The resnet50 workload on the embedded digits, resized to ``image_size`` (real, distinct input samples)."""
    from workloads import WORKLOADS

    return WORKLOADS.get("resnet50")(profile="tiny", dataset="digits", recipe_overrides={"image_size": image_size})


def resnet50_pair(
    cache_dir: Path | None = None, image_size: int = IMAGE_SIZE
) -> tuple[nn.Module, nn.Module, dict[str, Any], Any]:
    """(dense, thinned, info, workload), built from seed 0 (CPU modules, eval mode; about 7 s on a 2-core CPU).

    Built anew in each step that needs it rather than cached on disk: a cached whole-module pickle would have to be
    loaded with ``weights_only=False``, which the suite never does (SECURITY.md). ``cache_dir`` is accepted and unused.
    """
    del cache_dir
    workload = resnet50_workload(image_size)
    torch.manual_seed(0)
    dense = workload.build_model().eval()
    thinned, info = build_thinned(dense, workload.example_inputs(1))
    return dense, thinned, info, workload
