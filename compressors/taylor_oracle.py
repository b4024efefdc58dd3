"""Criterion quality against the oracle (Molchanov et al., CVPR'19, arXiv 1906.10771, §5 and Table 1).

The oracle importance of neuron ``m`` is the squared change of the loss when that neuron alone is removed (paper
Eq. 1, ``I_m = (E(D, W) - E(D, W | z_m = 0))^2``), measured with the gate of the neuron set to 0 on the same
minibatches the criterion sees. Like the criteria (per-minibatch values averaged over minibatches, Eq. 2/8), the
headline oracle is the mean over minibatches of each minibatch's squared change; the squared change of the mean loss
over all the minibatches is reported beside it. A criterion is good when it ranks neurons like the
oracle: the paper reports Spearman's rho (and Kendall's tau) between each criterion and the oracle over all neurons
of the network, > 0.9 for Taylor-FO on LeNet-3 and ResNet-18 on CIFAR-10.

Faithful: the oracle's definition and the per-minibatch criteria (averaged over minibatches). Differs: the oracle
is computed once on a fixed set of minibatches with the model in eval mode (the official ``run_full_oracle`` works
inside training), and the data is whatever the caller passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from scipy import stats
from torch import nn

from compressors.taylor_gates import SECOND_ORDER, GateSet, gate_hessian_diag, minibatch_criteria

LossFn = Callable[[nn.Module, Any], torch.Tensor]


@torch.no_grad()
def _losses(model: nn.Module, batches: Sequence[Any], loss_fn: LossFn) -> torch.Tensor:
    return torch.tensor([float(loss_fn(model, b)) for b in batches], dtype=torch.float64)


@torch.no_grad()
def oracle_importance(
    model: nn.Module, gates: GateSet, batches: Sequence[Any], loss_fn: LossFn, per_minibatch: bool = True
) -> list[torch.Tensor]:
    """Squared loss change when each neuron alone is gated off (paper Eq. 1), one tensor per gate group.

    Args:
        per_minibatch: average the squared change of each minibatch's loss (the aggregation the pruning criteria
            use: a per-minibatch value averaged over minibatches) instead of squaring the change of the mean loss.
    """
    base = _losses(model, batches, loss_fn)
    result = []
    for group in gates.groups:
        values = torch.zeros(group.size, dtype=torch.float64)
        for j in range(group.size):
            group.gate[j] = 0.0
            change = _losses(model, batches, loss_fn) - base
            group.gate[j] = 1.0
            values[j] = change.pow(2).mean() if per_minibatch else change.mean().pow(2)
        result.append(values)
    return result


def criterion_importance(
    model: nn.Module, gates: GateSet, batches: Sequence[Any], loss_fn: LossFn, criterion: str = "taylor_fo_bn"
) -> list[torch.Tensor]:
    """A pruning criterion averaged over ``batches`` (one minibatch criterion per batch, as during pruning)."""
    modules = dict(model.named_modules())
    generator = torch.Generator().manual_seed(0)
    total: list[torch.Tensor] | None = None
    for batch in batches:
        model.zero_grad(set_to_none=True)
        gates.zero_grad()
        loss = loss_fn(model, batch)
        second = None
        if criterion in SECOND_ORDER:
            second = lambda loss=loss: gate_hessian_diag(loss, gates.gates, exact=True)  # noqa: E731
        else:
            loss.backward()
        crit = minibatch_criteria(criterion, gates.groups, modules, generator, second)
        total = crit if total is None else [t + c for t, c in zip(total, crit, strict=True)]
    assert total is not None
    gates.zero_grad()
    model.zero_grad(set_to_none=True)
    return [t / len(batches) for t in total]


def criterion_oracle_correlation(
    model: nn.Module,
    batches: Sequence[Any],
    loss_fn: LossFn,
    example_inputs: tuple[torch.Tensor, ...],
    criterion: str = "taylor_fo_bn",
) -> dict[str, Any]:
    """Spearman's rho and Kendall's tau between ``criterion`` and the oracle over all gated neurons.

    Args:
        model: a trained model (left unchanged: gates are attached for the measurement and removed after).
        batches: minibatches ``loss_fn`` accepts (already on the model's device).
        loss_fn: ``(model, batch) -> mean loss`` (a workload's ``loss``).
        example_inputs: inputs to trace the gate groups.
        criterion: any of :data:`compressors.taylor_gates.CRITERIA`.

    Returns:
        ``spearman`` and ``kendall`` over all neurons against the per-minibatch oracle, ``spearman_dataset_oracle``
        against the squared change of the mean loss, ``spearman_per_group`` and ``neurons``.
    """
    was_training = model.training
    model.eval()
    gates = GateSet(model, example_inputs)
    try:
        oracle = oracle_importance(model, gates, batches, loss_fn, per_minibatch=True)
        dataset_oracle = oracle_importance(model, gates, batches, loss_fn, per_minibatch=False)
        crit = criterion_importance(model, gates, batches, loss_fn, criterion)
    finally:
        gates.detach()
        model.train(was_training)
    all_oracle = torch.cat(oracle).numpy()
    all_crit = torch.cat(crit).numpy()
    all_dataset = torch.cat(dataset_oracle).numpy()
    per_group = {
        g.name: float(stats.spearmanr(c.numpy(), o.numpy()).statistic)
        for g, c, o in zip(gates.groups, crit, oracle, strict=True)
    }
    return {
        "criterion": criterion,
        "spearman": float(stats.spearmanr(all_crit, all_oracle).statistic),
        "kendall": float(stats.kendalltau(all_crit, all_oracle).statistic),
        "spearman_dataset_oracle": float(stats.spearmanr(all_crit, all_dataset).statistic),
        "spearman_per_group": per_group,
        "neurons": int(all_oracle.size),
    }
