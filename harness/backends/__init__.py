"""Inference backends. Each turns a model into a runnable; a missing backend is skipped with its reason."""

from __future__ import annotations

from harness.backends.base import BACKENDS, Backend, BackendUnavailable, Runnable

for _name, _target in {
    "eager": "harness.backends.eager:EagerBackend",
}.items():
    BACKENDS.register_lazy(_name, _target)

__all__ = ["BACKENDS", "Backend", "BackendUnavailable", "Runnable"]
