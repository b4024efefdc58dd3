"""Multi-task networks: one shared network and one classifier head per task.

This is the structure of the official PackNet and Piggyback code (``networks.py``: ``model.shared`` holds every
layer but the last, ``model.classifiers`` one ``nn.Linear`` per dataset, ``set_dataset`` picks the active one).
:func:`split_head` cuts a workload's model into the two parts and checks that ``head(shared(x))`` reproduces the
model's logits exactly, so the dense baseline is task 1 unchanged.

Per-task tensors other than the head (biases or BatchNorm statistics, when an option trains them per task) are
kept in :class:`TensorStore` s and copied into the shared network when the task is selected: without them a later
task would overwrite an earlier task's biases and break zero forgetting.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from compressors.base import IncompatibleWorkloadError

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _locate(model: nn.Module, num_classes: int) -> tuple[nn.Module, str, list[str]]:
    """(parent module, attribute of the head Linear, attributes of the parent's modules that form the head)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not names:
        raise IncompatibleWorkloadError(f"no nn.Linear with {num_classes} outputs: the classifier head is not found")
    parent_name, _, attr = names[-1].rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    if isinstance(parent, nn.Sequential):
        keys = list(parent._modules)
        return parent, attr, keys[keys.index(attr) :]  # the head Linear and what follows it (e.g. a BatchNorm1d)
    return parent, attr, [attr]


def split_head(model: nn.Module, num_classes: int, example: torch.Tensor) -> tuple[nn.Module, nn.Module]:
    """Cut ``model`` (in place) into (shared, head): the head slot becomes ``nn.Identity``.

    Raises :class:`IncompatibleWorkloadError` unless ``head(shared(x))`` equals ``model(x)`` bit for bit.
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        expected = model(example)
    parent, _attr, keys = _locate(model, num_classes)
    parts = [parent._modules[k] for k in keys]
    for key in keys:
        parent._modules[key] = nn.Identity()
    head = parts[0] if len(parts) == 1 else nn.Sequential(*parts)
    with torch.no_grad():
        got = head(model(example))
    model.train(was_training)
    head.train(was_training)
    if got.shape != expected.shape or not torch.equal(got, expected):
        raise IncompatibleWorkloadError(
            "the classifier head could not be cut off the model: head(shared(x)) differs from model(x)"
        )
    return model, head


def new_head(template: nn.Module, num_classes: int) -> nn.Module:
    """A freshly initialised head shaped like ``template`` with ``num_classes`` outputs (torch's default init, as
    the official ``nn.Linear(4096, num_outputs)``)."""
    if isinstance(template, nn.Sequential):
        return nn.Sequential(*(new_head(m, num_classes) for m in template))
    if isinstance(template, nn.Linear):
        return nn.Linear(template.in_features, num_classes, bias=template.bias is not None)
    if isinstance(template, BATCHNORMS):
        return type(template)(
            num_classes, eps=template.eps, momentum=template.momentum, affine=template.affine,
            track_running_stats=template.track_running_stats,
        )  # fmt: skip
    return copy.deepcopy(template)  # parameter-free parts (dropout, activations)


class TensorStore(nn.Module):
    """Copies of named tensors of the shared network (buffers, so they are stored and moved with the model)."""

    def __init__(self, tensors: dict[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        for name, tensor in (tensors or {}).items():
            self.register_buffer(name.replace(".", "__"), tensor.detach().clone())

    def named(self) -> Iterator[tuple[str, torch.Tensor]]:
        for key, tensor in self._buffers.items():
            if tensor is not None:
                yield key.replace("__", "."), tensor


class MultiTaskNet(nn.Module):
    """``heads[active](shared(x))``; ``set_task(i)`` selects task ``i`` (0 = task 1).

    Args:
        shared: the network without its head (see :func:`split_head`).
        heads: task 1's head first.
        names: one name per head.
        freeze_shared_bn: keep the shared network's BatchNorm layers in eval mode in ``train()`` (running statistics
            frozen: the official ``train_nobn``).
    """

    def __init__(self, shared: nn.Module, heads: list[nn.Module], names: list[str], freeze_shared_bn: bool = False):
        super().__init__()
        self.shared = shared
        self.heads = nn.ModuleList(heads)
        self.task_states = nn.ModuleList(TensorStore() for _ in heads)
        self.task_names = list(names)
        self.active = 0
        self.freeze_shared_bn = freeze_shared_bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.heads[self.active](self.shared(x))

    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    def add_task(self, head: nn.Module, name: str) -> int:
        device = next(self.shared.parameters()).device
        self.heads.append(head.to(device))
        self.task_states.append(TensorStore())
        self.task_names.append(name)
        return len(self.heads) - 1

    def set_task(self, index: int) -> None:
        """Serve task ``index``: its head, and its own copies of any per-task shared tensors."""
        if not 0 <= index < self.num_tasks:
            raise IndexError(f"task {index} does not exist; the model has {self.num_tasks} tasks")
        live = self.shared.state_dict(keep_vars=True)
        with torch.no_grad():
            for name, tensor in self.task_states[index].named():  # type: ignore[attr-defined]
                live[name].copy_(tensor)
        self.active = index

    def save_task_state(self, index: int, names: list[str]) -> None:
        """Keep task ``index``'s own values of the shared tensors ``names`` (restored by :meth:`set_task`)."""
        live = self.shared.state_dict(keep_vars=True)
        self.task_states[index] = TensorStore({n: live[n] for n in names})

    def train(self, mode: bool = True) -> MultiTaskNet:
        super().train(mode)
        if mode and self.freeze_shared_bn:
            for module in self.shared.modules():
                if isinstance(module, BATCHNORMS):
                    module.eval()
        return self

    @contextmanager
    def serving(self, index: int) -> Iterator[None]:
        """Temporarily serve task ``index`` in eval mode, then return to the task and mode before."""
        before, was_training = self.active, self.training
        self.eval()
        self.set_task(index)
        try:
            yield
        finally:
            self.set_task(before)
            self.train(was_training)


def batchnorm_tensor_names(shared: nn.Module) -> list[str]:
    """State-dict names of every BatchNorm parameter and running statistic in ``shared``."""
    names = []
    for prefix, module in shared.named_modules():
        if isinstance(module, BATCHNORMS):
            names += [f"{prefix}.{n}" if prefix else n for n in module.state_dict()]
    return names


def describe_heads(model: MultiTaskNet) -> list[dict[str, Any]]:
    return [
        {"task": name, "params": sum(p.numel() for p in head.parameters())}
        for name, head in zip(model.task_names, model.heads, strict=True)
    ]
