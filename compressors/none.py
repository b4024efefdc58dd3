"""The dense baseline: no compression. Goes through the same interface as every compressor."""

from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from compressors import COMPRESSORS
from compressors.base import CompressedModel, Compressor, CompressorConfig, CompressorInfo
from harness.context import RunContext


@dataclass
class NoneConfig(CompressorConfig):
    """No options."""


@COMPRESSORS.register("none")
class NoCompression(Compressor):
    info = CompressorInfo(name="none", paper="", kind="none", needs_data=False, description="dense baseline, unchanged")
    Config = NoneConfig

    def apply(self, model: nn.Module, ctx: RunContext) -> CompressedModel:
        return CompressedModel(model=copy.deepcopy(model), execution="dense", summary={"changed": "nothing"})
