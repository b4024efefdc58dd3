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
    "lstm_lm": "workloads.language_model:LSTMLanguageModel",
    "gru_lm": "workloads.language_model:GRULanguageModel",
    "lstm_char": "workloads.language_model:LSTMCharModel",
    "gru_char": "workloads.language_model:GRUCharModel",
    "bert": "workloads.bert:BertWorkload",
    "deepspeech2": "workloads.deepspeech2:DeepSpeech2Workload",
    "cifar_resnet18": "workloads.cifar_resnet:CifarResNet18",
    "cifar_resnet34": "workloads.cifar_resnet:CifarResNet34",
    "vgg16": "workloads.vgg:VGG16",
    "vgg16_bn": "workloads.vgg:VGG16BN",
    "alexnet": "workloads.alexnet:AlexNetWorkload",
    "alexnet_bn": "workloads.alexnet:AlexNetBNWorkload",
    "mobilenet_v2": "workloads.mobilenet:MobileNetV2Workload",
    "mlp": "workloads.mlp:MLPWorkload",
    "lenet3": "workloads.mlp:LeNet3Workload",
    "darts_search": "workloads.nas.workloads:DartsSearchWorkload",
    "darts_eval": "workloads.nas.workloads:DartsEvalWorkload",
    "proxyless_search": "workloads.nas.workloads:ProxylessSearchWorkload",
    "proxyless_eval": "workloads.nas.workloads:ProxylessEvalWorkload",
}.items():
    WORKLOADS.register_lazy(_name, _target)

__all__ = ["WORKLOADS", "Recipe", "Reference", "Workload", "WorkloadInfo"]
