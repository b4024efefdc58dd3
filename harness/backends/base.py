"""Backend interface: ``prepare(model, example_inputs) -> Runnable``; ``Runnable(*inputs)`` runs one batch."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from harness.registry import Registry

BACKENDS: Registry = Registry("backend")


class BackendUnavailable(RuntimeError):
    """The backend cannot run here (library or device missing); the message is the reason recorded."""


class Runnable(ABC):
    """A prepared model. Call it with one input tuple; ``synchronize`` waits for queued device work."""

    info: dict[str, Any]

    @abstractmethod
    def __call__(self, *inputs: Any) -> Any: ...

    def synchronize(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def outputs(self, *inputs: Any) -> torch.Tensor:
        """Outputs as a CPU float tensor, for agreement checks against eager."""
        out = self(*inputs)
        if isinstance(out, (list, tuple)):
            out = out[0]
        if hasattr(out, "logits"):
            out = out.logits
        return torch.as_tensor(out).detach().float().cpu()


class Backend(ABC):
    name: ClassVar[str]

    def check_available(self, device: str) -> None:  # noqa: B027 - optional hook, available by default
        """Raise :class:`BackendUnavailable` with the reason if this backend cannot run on ``device``."""

    @abstractmethod
    def prepare(self, model: nn.Module, example_inputs: tuple[Any, ...], device: str) -> Runnable: ...

    def share_machine(self) -> None:  # noqa: B027 - optional hook
        """Configure for several prepared models timed in turn in one process (the interleaved comparison): a backend
        whose idle threads keep working between calls (spin-waiting) must stop, or one model's spinning threads
        steal cores from the next one's call."""
