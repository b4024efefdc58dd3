"""The two controls PackNet (§4, Table 2) and Piggyback (§4, Table 1) compare against, trained in the same run.

* ``separate`` ("individual networks"): one full network per task, each fine-tuned from the dense baseline (all
  layers, biases and BatchNorm trained; the official ``run_baseline_finetuning.sh`` / ``run_baselines.sh`` with
  ``--finetune_layers all --train_bn``). Task 1's network is the dense baseline itself. Its storage is a whole
  network per task: the upper bound of accuracy at T times the bytes.
* ``finetune`` (plain sequential fine-tuning): one network fine-tuned on each task in turn, a new head per task and
  the earlier heads kept, nothing protected. Every earlier task is evaluated after each new one: the accuracy matrix
  shows the forgetting the methods avoid.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

from compressors.continual.heads import MultiTaskNet, new_head
from compressors.continual.metrics import evaluate_upto, matrix_record, metric_of, module_bytes
from compressors.continual.training import add_task_head, multitask_from_baseline
from workloads.base import Recipe


def _train_all(model: MultiTaskNet, task: int) -> None:
    model.freeze_shared_bn = False
    for p in model.shared.parameters():
        p.requires_grad_(True)
    for index, head in enumerate(model.heads):
        for p in head.parameters():
            p.requires_grad_(index == task)


def separate_models(
    ctx: Any, baseline: nn.Module, tasks: list[Any], recipe_for: Callable[[Any], Recipe]
) -> dict[str, Any]:
    """Accuracy and bytes of one fine-tuned full network per task (task 1: the dense baseline)."""
    device = ctx.device
    rows = []
    for task in tasks:
        if task.index == 0:
            model: nn.Module = copy.deepcopy(baseline).to(device)
            value, epochs = metric_of(task, model, device), 0
        else:
            net = _one_task_net(baseline, tasks, task, device)
            index = 0
            _train_all(net, index)
            recipe = recipe_for(task)
            with ctx.phase(f"control separate: {task.name}") as entry:
                ctx.trainer(f"separate-{task.index + 1}", recipe=recipe, workload=task.workload).fit(net)
                value, epochs = metric_of(task, net.eval(), device), recipe.epochs
                entry["metric"] = value
            model = nn.Sequential(net.shared, net.heads[index])
        rows.append({"task": task.name, "metric": value, "epochs": epochs, "bytes": module_bytes(model)})
        del model
    return {
        "what": "one full network per task, fine-tuned from the dense baseline (task 1: the baseline itself)",
        "tasks": rows,
        "final": [r["metric"] for r in rows],
        "final_mean": sum(r["metric"] for r in rows) / len(rows),
        "total_bytes": sum(r["bytes"] for r in rows),
    }


def _one_task_net(baseline: nn.Module, tasks: list[Any], task: Any, device: str) -> MultiTaskNet:
    """A network that serves only ``task``: a copy of the baseline's shared part and a fresh head."""
    net = multitask_from_baseline(copy.deepcopy(baseline), tasks, device)
    return MultiTaskNet(net.shared, [new_head(net.heads[0], task.workload.num_classes).to(device)], [task.name])


def sequential_finetuning(
    ctx: Any, baseline: nn.Module, tasks: list[Any], recipe_for: Callable[[Any], Recipe]
) -> dict[str, Any]:
    """The accuracy matrix of one network fine-tuned on the tasks in order (earlier heads kept, nothing frozen)."""
    device = ctx.device
    net = multitask_from_baseline(copy.deepcopy(baseline), tasks, device)
    columns = [evaluate_upto(net, tasks, 0, device)]
    for task in tasks[1:]:
        index = add_task_head(net, task)
        net.set_task(index)
        _train_all(net, index)
        with ctx.phase(f"control finetune: {task.name}") as entry:
            ctx.trainer(f"finetune-{task.index + 1}", recipe=recipe_for(task), workload=task.workload).fit(net)
            columns.append(evaluate_upto(net, tasks, index, device))
            entry["metrics"] = columns[-1]
    result = matrix_record(columns, [t.name for t in tasks])
    result["what"] = "one network fine-tuned on each task in turn (new head per task, earlier heads kept)"
    result["total_bytes"] = module_bytes(net)
    return result


def run_controls(
    ctx: Any, names: tuple[str, ...], baseline: nn.Module, tasks: list[Any], recipe_for: Callable[[Any], Recipe]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "separate" in names:
        ctx.log("control: one separate network per task")
        out["separate_models"] = separate_models(ctx, baseline, tasks, recipe_for)
    if "finetune" in names:
        ctx.log("control: plain sequential fine-tuning")
        out["finetuning"] = sequential_finetuning(ctx, baseline, tasks, recipe_for)
    return out
