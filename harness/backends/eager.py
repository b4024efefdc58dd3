"""PyTorch eager execution under ``torch.inference_mode``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.backends.base import BACKENDS, Backend, Runnable


class EagerRunnable(Runnable):
    def __init__(self, model: nn.Module, device: str) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.info = {"backend": "eager", "torch": torch.__version__, "threads": torch.get_num_threads()}

    def __call__(self, *inputs: Any) -> Any:
        with torch.inference_mode():
            return self.model(*inputs)

    def synchronize(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()


@BACKENDS.register("eager")
class EagerBackend(Backend):
    name = "eager"

    def check_available(self, device: str) -> None:
        pass

    def prepare(self, model: nn.Module, example_inputs: tuple[Any, ...], device: str) -> Runnable:
        return EagerRunnable(model, device)
