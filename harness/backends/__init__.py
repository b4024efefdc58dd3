"""Inference backends. Each turns a model into a runnable; a missing backend is skipped with its reason."""

from __future__ import annotations

from harness.backends.base import BACKENDS, Backend, BackendUnavailable, Runnable

for _name, _target in {
    "eager": "harness.backends.eager:EagerBackend",
    "compile": "harness.backends.compile:CompileBackend",
    "onnxruntime": "harness.backends.onnxruntime:OnnxRuntimeBackend",
    "tensorrt": "harness.backends.tensorrt:TensorRTBackend",
    "tensorrt-fp16": "harness.backends.tensorrt:TensorRTFP16Backend",
    "tensorrt-int8": "harness.backends.tensorrt:TensorRTINT8Backend",
}.items():
    BACKENDS.register_lazy(_name, _target)

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "Runnable"]
