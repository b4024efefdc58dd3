"""FLOPs/MACs with ``torch.utils.flop_counter.FlopCounterMode`` (METHODOLOGY §7).

The counter works at the dispatcher (matmul = 2mnk FLOPs; MACs = FLOPs / 2). Ops it has no formula for count zero,
so every aten op seen is recorded and those without a formula are listed; a *heavy* op among them (a convolution,
matmul or attention variant) makes the count an error rather than a silent undercount (fvcore's practice).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

HEAVY_OP_MARKERS = ("conv", "mm", "matmul", "linear", "attention", "einsum", "lstm", "gru", "rnn")


class MissingFlopFormulaError(RuntimeError):
    pass


def _rnn_layer_flops(input_shape: Any, w_ih_shape: Any, w_hh_shape: Any, *args: Any, **kwargs: Any) -> int:
    """One RNN/LSTM/GRU layer and direction: per time step and sample, the input and recurrent matmuls cost
    2 x (gates x hidden x input + gates x hidden x hidden) FLOPs; the gate non-linearities are not counted (as for
    every other element-wise op in FlopCounterMode)."""
    steps_times_batch = math.prod(input_shape[:-1])
    return 2 * steps_times_batch * (math.prod(w_ih_shape) + math.prod(w_hh_shape))


def _register_rnn_formula() -> None:
    """CPU LSTMs dispatch to ``aten.mkldnn_rnn_layer``, which FlopCounterMode has no formula for."""
    from torch.utils.flop_counter import flop_registry, register_flop_formula

    op = getattr(torch.ops.aten, "mkldnn_rnn_layer", None)
    if op is not None and op not in flop_registry and op.default not in flop_registry:
        register_flop_formula(op)(_rnn_layer_flops)


_register_rnn_formula()


class _OpRecorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def count_flops(model: nn.Module, inputs: tuple[Any, ...], strict: bool = True) -> dict[str, Any]:
    """Dense FLOPs of one forward pass on ``inputs``, per module, with the ops that had no formula."""
    from torch.utils.flop_counter import flop_registry

    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False, depth=None)  # type: ignore[arg-type]  # None = every depth
    recorder = _OpRecorder()
    with torch.no_grad(), counter, recorder:
        model(*inputs)
    model.train(was_training)
    known = {str(op) for op in flop_registry}
    unsupported = sorted(op for op in recorder.ops if op not in known)
    heavy = [op for op in unsupported if any(m in op.split(".")[-1] for m in HEAVY_OP_MARKERS)]
    if heavy and strict:
        raise MissingFlopFormulaError(
            f"FlopCounterMode has no formula for heavy op(s) {heavy}; the FLOP count would be too low. "
            f"Add a formula with torch.utils.flop_counter.register_flop_formula or count these layers analytically."
        )
    total = int(counter.get_total_flops())
    per_module = {
        name: int(sum(counts.values())) for name, counts in counter.get_flop_counts().items() if name != "Global"
    }
    return {
        "flops": total,
        "macs": total // 2,
        "per_module": per_module,
        "per_leaf_module": leaf_flops(model, per_module),
        "unsupported_ops": unsupported,
        "heavy_unsupported_ops": heavy,
        "batch_size": int(_batch_size(inputs)),
    }


def leaf_flops(model: nn.Module, per_module: dict[str, int]) -> dict[str, int]:
    """FLOPs of leaf modules keyed by their ``named_modules`` path.

    FlopCounterMode names modules ``<RootClass>.<path>`` and counts a parent's FLOPs again at every level, so only
    leaves (modules without children) can be summed or weighted per layer.
    """
    root = type(model).__name__
    leaves = {name for name, module in model.named_modules() if name and not any(True for _ in module.children())}
    result: dict[str, int] = {}
    for name, flops in per_module.items():
        path = name[len(root) + 1 :] if name.startswith(root + ".") else name
        if path in leaves:
            result[path] = result.get(path, 0) + flops
    return result


def _batch_size(inputs: tuple[Any, ...]) -> int:
    for item in inputs:
        if isinstance(item, torch.Tensor) and item.dim() > 0:
            return item.shape[0]
    return 1
