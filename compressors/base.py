"""Compressor interface.

A compressor is one published method. Its ``Config`` dataclass is the API (torchao's config-is-the-API): versioned,
validated from ``--set key=value`` strings, and round-trips through JSON. ``apply(model, ctx)`` orchestrates the
method's own schedule with the harness Trainer; training-time behaviour plugs in through Trainer callbacks.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import nn

from harness.values import parse_value

if TYPE_CHECKING:
    from harness.context import RunContext
    from workloads.base import Workload

KINDS = ("none", "pruning", "quantization", "multitask", "nas", "data-free", "training")
EXECUTION_LABELS = ("dense", "executed", "simulated")


class IncompatibleWorkloadError(ValueError):
    """The compressor cannot be applied to this workload."""


@dataclass
class CompressorConfig:
    """Base config. Subclasses add fields with defaults; ``version`` changes when field meaning changes."""

    version: ClassVar[int] = 1

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CompressorConfig:
        data = dict(data)
        version = data.pop("version", cls.version)
        if version != cls.version:
            raise ValueError(f"{cls.__name__} version {version} cannot be loaded by version {cls.version}")
        unknown = sorted(set(data) - cls.field_names())
        if unknown:
            raise ValueError(f"Unknown key(s) {unknown} for {cls.__name__}. Valid keys: {sorted(cls.field_names())}")
        return cls(**data)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_strings(cls, values: dict[str, str]) -> CompressorConfig:
        """Build from ``--set`` strings, converting each to its field's annotated type."""
        hints = typing.get_type_hints(cls)
        converted = {key: parse_value(raw, hints[key], key) for key, raw in values.items() if key in hints}
        unknown = sorted(set(values) - set(hints))
        if unknown:
            raise ValueError(
                f"Unknown key(s) {unknown} for {cls.__name__}. Valid keys: {sorted(cls.field_names()) or 'none'}"
            )
        return cls(**converted)


@dataclass(frozen=True)
class CompressorInfo:
    name: str
    paper: str  # arXiv id
    kind: str  # one of KINDS
    needs_data: bool = True
    supports: tuple[str, ...] = ("cnn", "mlp", "rnn", "transformer", "speech")  # workload kinds
    description: str = ""


@dataclass
class CompressedModel:
    """Result of ``apply``.

    Attributes:
        model: the model to deploy and measure.
        execution: 'dense' (no saving claimed), 'executed' (a real kernel realises the saving) or 'simulated'.
        summary: what changed (sparsity per layer, bits per tensor, found architecture, per-phase figures).
        variants: other models worth measuring beside ``model`` (e.g. 'masked' for a pruned model before thinning).
        weight_bits: bits per parameter tensor name, for size accounting of quantized models.
    """

    model: nn.Module
    execution: str = "dense"
    summary: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, nn.Module] = field(default_factory=dict)
    weight_bits: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.execution not in EXECUTION_LABELS:
            raise ValueError(f"execution must be one of {EXECUTION_LABELS}, got {self.execution!r}")


class Compressor(ABC):
    """Base class. Subclasses set ``info`` and ``Config`` and implement ``apply``."""

    info: ClassVar[CompressorInfo]
    Config: ClassVar[type[CompressorConfig]] = CompressorConfig

    def __init__(self, config: CompressorConfig | None = None) -> None:
        self.config = config if config is not None else self.Config()

    def check_compatible(self, workload: Workload) -> None:
        """Raise :class:`IncompatibleWorkloadError` naming the reason and the workloads that fit."""
        if workload.info.kind not in self.info.supports:
            raise IncompatibleWorkloadError(
                f"Compressor {self.info.name!r} does not fit workload {workload.info.name!r} "
                f"(kind {workload.info.kind!r}); it supports workload kinds {list(self.info.supports)}. "
                f"Run 'python -m harness ls workloads' to pick one."
            )

    @abstractmethod
    def apply(self, model: nn.Module, ctx: RunContext) -> CompressedModel:
        """Compress ``model`` (already trained dense baseline) and return the result."""
