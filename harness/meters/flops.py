"""FLOPs/MACs with ``torch.utils.flop_counter.FlopCounterMode`` (METHODOLOGY §7).

The counter works at the dispatcher (matmul = 2mnk FLOPs; MACs = FLOPs / 2). Ops it has no formula for count zero,
so every aten op seen is recorded and those without a formula are listed; a *heavy* op among them (a convolution,
matmul or attention variant) makes the count an error rather than a silent undercount (fvcore's practice).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

HEAVY_OP_MARKERS = ("conv", "mm", "matmul", "linear", "attention", "einsum", "lstm", "gru", "rnn")


class MissingFlopFormulaError(RuntimeError):
    pass


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
    counter = FlopCounterMode(display=False, depth=None)
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
        "unsupported_ops": unsupported,
        "heavy_unsupported_ops": heavy,
        "batch_size": int(_batch_size(inputs)),
    }


def _batch_size(inputs: tuple[Any, ...]) -> int:
    for item in inputs:
        if isinstance(item, torch.Tensor) and item.dim() > 0:
            return item.shape[0]
    return 1
