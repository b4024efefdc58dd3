"""Workloads: the published models, their data, metrics and recipes. Looked up by name in ``WORKLOADS``."""

from __future__ import annotations

from harness.registry import Registry
from workloads.base import Recipe, Reference, Workload, WorkloadInfo

WORKLOADS: Registry[type[Workload]] = Registry("workload", entry_point_group="compression_bench.workloads")

# Lazy entries: "module:attr" is imported only when the workload is used.
for _name, _target in {
    "resnet18": "workloads.resnet:ResNet18",
    "resnet34": "workloads.resnet:ResNet34",
    "resnet50": "workloads.resnet:ResNet50",
    "resnet101": "workloads.resnet:ResNet101",
}.items():
    WORKLOADS.register_lazy(_name, _target)

__all__ = ["WORKLOADS", "Recipe", "Reference", "Workload", "WorkloadInfo"]
