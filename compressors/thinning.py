"""Physical channel removal and its cost model for Taylor pruning (arXiv 1906.10771).

:func:`thin` removes the pruned channels of a folded model with Torch-Pruning's ``DependencyGraph`` (residual and
BN couplings stay consistent); the result is an ordinary dense ``nn.Module``. :class:`CostModel` predicts the conv/
linear FLOPs and the parameters of that thinned model from the gates alone, for the FLOPs/params pruning targets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from compressors.taylor_gates import NORM_TYPES, ROOT_TYPES, GateGroup


def thin(model: nn.Module, groups: list[GateGroup], pruned: list[torch.Tensor], example_inputs: tuple) -> nn.Module:
    """Physically remove the pruned channels of ``model`` (in place) with Torch-Pruning; returns ``model``.

    Args:
        model: a dense-shape model whose pruned channels are already zeroed (see :meth:`GateSet.fold`).
        groups: the gate groups (by layer name; they may come from another copy of the same architecture).
        pruned: per group, a boolean vector of channels to remove.
        example_inputs: inputs to trace the dependency graph.
    """
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs)
    modules = dict(model.named_modules())
    for group, mask in zip(groups, pruned, strict=True):
        idxs = torch.nonzero(mask).flatten().tolist()
        if not idxs:
            continue
        root = modules[group.name]
        fn = tp.prune_conv_out_channels if isinstance(root, nn.Conv2d) else tp.prune_linear_out_channels
        pruning_group = graph.get_pruning_group(root, fn, idxs=idxs)
        pruning_group.prune()
    return model


class CostModel:
    """Conv/linear MACs and parameters of the gated model as if its pruned channels were removed.

    Each conv/linear layer's dense cost is scaled by the kept fraction of the group of its output channels and of the
    group of its input channels (a depthwise conv only by the former). This is what a FLOP counter reports for the
    thinned model's conv/linear ops (``FlopCounterMode`` counts 2 FLOPs per MAC), computed without thinning a copy.
    """

    def __init__(self, model: nn.Module, groups: list[GateGroup], example_inputs: tuple[torch.Tensor, ...]) -> None:
        self.layers: dict[str, dict[str, Any]] = {}
        macs = _layer_macs(model, example_inputs)
        out_of = {name: i for i, g in enumerate(groups) for name in g.out_layers + g.sites}
        in_of = {name: i for i, g in enumerate(groups) for name in g.in_layers}
        for name, module in model.named_modules():
            if isinstance(module, ROOT_TYPES + NORM_TYPES):
                bias = getattr(module, "bias", None)
                bias_params = bias.numel() if isinstance(bias, torch.Tensor) else 0
                params = sum(p.numel() for p in module.parameters(recurse=False)) - bias_params
                depthwise = isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.in_channels
                self.layers[name] = {
                    "macs": macs.get(name, 0),
                    "params": params,
                    "bias_params": bias_params,
                    "out": out_of.get(name),
                    "in": None if depthwise or isinstance(module, NORM_TYPES) else in_of.get(name),
                }
        counted = sum(v["params"] + v["bias_params"] for v in self.layers.values())
        self.other_params = sum(p.numel() for p in model.parameters()) - counted
        self.dense = self.estimate([torch.ones(g.size, dtype=torch.bool) for g in groups])

    def estimate(self, kept: list[torch.Tensor]) -> dict[str, float]:
        """``{'flops', 'params'}`` with ``kept[i]`` the boolean keep-vector of group ``i``."""
        frac = [float(k.float().mean()) for k in kept]
        flops = 0.0
        params = float(self.other_params)
        for layer in self.layers.values():
            out_scale = frac[layer["out"]] if layer["out"] is not None else 1.0
            scale = out_scale * (frac[layer["in"]] if layer["in"] is not None else 1.0)
            flops += 2.0 * layer["macs"] * scale
            params += layer["params"] * scale + layer["bias_params"] * out_scale
        return {"flops": flops, "params": params}

    def reduction(self, kept: list[torch.Tensor]) -> dict[str, float]:
        """Fraction of dense FLOPs and parameters removed."""
        now = self.estimate(kept)
        return {key: 1.0 - now[key] / max(self.dense[key], 1.0) for key in ("flops", "params")}


def _layer_macs(model: nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> dict[str, int]:
    """Per-sample multiply-accumulates of each conv/linear layer, from one traced forward pass."""
    macs: dict[str, int] = {}
    handles = []

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            per_sample = output.numel() // max(output.shape[0], 1)
            if isinstance(module, nn.Conv2d):
                fan_in = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            else:
                fan_in = module.in_features
            macs[name] = macs.get(name, 0) + per_sample * fan_in

        return hook

    for name, module in model.named_modules():
        if isinstance(module, ROOT_TYPES):
            handles.append(module.register_forward_hook(make_hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(*[x[:1] for x in example_inputs])
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return macs


def export_thinned(model: nn.Module, example_inputs: tuple[torch.Tensor, ...], out_dir: Path) -> dict[str, str]:
    """Save the thinned model so that it reloads without the model's source code.

    Writes ``thinned_model.pt2``: a ``torch.export`` program with a dynamic batch dimension; reload it with
    ``torch.export.load(path).module()``, which needs only torch. A state_dict alone would not do: the thinned
    layer widths differ from the architecture's constructor.

    Returns:
        ``{'torch_export': path}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    dynamic = tuple({0: batch} for _ in example_inputs)
    program = torch.export.export(model, tuple(example_inputs), dynamic_shapes=dynamic)
    path = out_dir / "thinned_model.pt2"
    torch.export.save(program, path)
    return {"torch_export": str(path)}


def load_thinned(path: str | Path) -> nn.Module:
    """Reload a model written by :func:`export_thinned` (an ``nn.Module`` running the saved graph)."""
    return torch.export.load(str(path)).module()
