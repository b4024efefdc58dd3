"""Low-precision RNN weights: Ott, Lin, Zhang, Liu, Bengio, "Recurrent Neural Networks With Limited Numerical
Precision", arXiv 1608.06902 (official code ottj/QuantizedRNN @a382981).

Method (paper; official code ``rounding_rnn.py``): the real weights ``W`` are kept; every forward pass uses ``Q(W)`` and
the gradient wrt ``Q(W)`` updates ``W`` unchanged (rounding with the gradient preserved). ``Q`` is applied to the
input weights, recurrent weights and biases of vanilla RNN / GRU / LSTM layers (flags ``round_input_weights``,
``round_hid``, ``round_bias``). The rules are in :mod:`compressors.rnn_quantizers` (binarization, ternarization
deterministic/stochastic, pow2-ternarization, exponential quantization deterministic/stochastic).

Faithful:
  * ``W0`` per tensor from the Glorot limit: input weights and biases ``sqrt(6 / (fan_in + n_hid))``, recurrent
    weights ``sqrt(6 / (2 n_hid))`` (``rounding_rnn.py`` L79-82; biases use the input ``W0``). Fan-in of layer
    ``l > 0`` is ``n_hid`` times the number of directions.
  * Binarization uses ``H = 1`` as the official layer does (``binarize_weights(weights, 1., ...)``);
    ``binary_h=None`` uses the Glorot ``W0`` instead (BinaryConnect's ``H='Glorot'``).
  * Stochastic quantizers resample at every forward pass in training mode; in eval mode the deterministic rule of
    the same family is used, as the official layer does at test time (Lasagne ``deterministic=True``).
  * Training from scratch with the quantizers in place (``init='scratch'``), with the workload's own recipe, so the
    full-precision baseline and every quantized run share model, data and recipe.

Differs / not reproduced:
  * The layers stay ``torch.nn.RNN/LSTM/GRU`` (fused kernels); ``Q`` is attached with
    ``torch.nn.utils.parametrize``. PyTorch LSTM/GRU have two bias vectors (``b_ih``, ``b_hh``) where Lasagne has
    one; both are quantized with the input ``W0``, so their sum can take 5 values.
  * No batch normalisation on the layer inputs (optional in the paper, on by default in the code): the workload's
    architecture is not changed. No Glorot learning-rate scaling (``W_LR_scale`` is computed in the official layer
    but the training script that would use it is not published). Binary mode does not binarize the gate
    nonlinearities (the official ``Gate`` swaps them in binary mode, which the official ``GRULayer`` does not use).
  * Real weights are clipped to ``[-H, H]`` after each step for binarization only (BinaryConnect's rule;
    ``clip_binary``); the official repository has no training loop, so nothing else is clipped.
  * Embedding and output layers are not quantized (the official code quantizes the recurrent layer's tensors).
  * Savings are simulated: the deployed model holds the quantized values in float32 (``execution='simulated'``);
    size and BOPs are given analytically in ``weight_bits`` and ``summary``.
  * pow2-ternarization follows the official fixed-point rounding (level ``2^-1``); ``pow2_frac_bits=None`` is the
    other reading (level = the power of two nearest each tensor's ``W0``). The paper's method section could not be
    retrieved to settle it (see :mod:`compressors.rnn_quantizers`).

Paper's finding (abstract and conclusion): binarization does not work for RNNs, while ternarization (stochastic and
deterministic), pow2-ternarization and exponential quantization match or beat full precision; the authors attribute
it to the variance that binarizing near-zero weights to +-1 adds to weighted sums that the recurrence reuses at
every step. ``suite/rnn_ternary.yaml`` runs the comparison on the embedded corpus.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from compressors import COMPRESSORS
from compressors.base import (
    CompressedModel,
    Compressor,
    CompressorConfig,
    CompressorInfo,
    IncompatibleWorkloadError,
)
from compressors.rnn_quantizers import (
    EXP_BITLIMIT,
    METHODS,
    allowed_values,
    glorot_limit,
    grad_preserve,
    quantize,
    storage_bits,
)
from harness.context import RunContext
from harness.train import Callback, Trainer

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}
ACTIVATION_BITS = 32  # activations are not quantized by this method
_NAME = re.compile(r"^(weight|bias)_(ih|hh)_l(\d+)(_reverse)?$")


@dataclass
class TernaryRNNConfig(CompressorConfig):
    """Options of the low-precision RNN compressor.

    Attributes:
        method: binary | ternary | pow2_ternary | exponential.
        stochastic: stochastic rounding in training (binary, ternary, exponential); eval is always deterministic.
        binary_h: binarization level ``H``; ``None`` uses each tensor's Glorot ``W0``. Official: 1.0.
        pow2_frac_bits: pow2-ternary level ``2^-f``; ``None`` picks per tensor the power of two nearest (in log2)
            to its Glorot ``W0``. Official (dual-copy ``fractional_bits``): 1, i.e. levels {-0.5, 0, 0.5}.
        round_input_weights / round_hid / round_bias: which tensors are quantized (official defaults: all).
        init: 'scratch' (train a fresh model with the quantizers, as the paper) or 'baseline' (fine-tune the
            trained dense model).
        epochs: training epochs; ``None`` uses the workload recipe's (the dense baseline's) epochs.
        clip_binary: clip real weights to [-H, H] after each step when binarizing (BinaryConnect).
    """

    method: str = "ternary"
    stochastic: bool = False
    binary_h: float | None = 1.0
    pow2_frac_bits: int | None = 1
    round_input_weights: bool = True
    round_hid: bool = True
    round_bias: bool = True
    init: str = "scratch"
    epochs: int | None = None
    clip_binary: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; use one of {list(METHODS)}")
        if self.init not in ("scratch", "baseline"):
            raise ValueError(f"Unknown init {self.init!r}; use 'scratch' or 'baseline'")
        if self.stochastic and self.method == "pow2_ternary":
            raise ValueError("pow2_ternary is deterministic only (dual-copy rounding); set stochastic=false")


class WeightQuantizer(nn.Module):
    """Parametrization ``W -> Q(W)`` with the gradient passed to ``W``; stochastic only in training mode."""

    def __init__(self, method: str, stochastic: bool, level: float, frac_bits: int = 1) -> None:
        super().__init__()
        self.method, self.stochastic, self.level, self.frac_bits = method, stochastic, level, frac_bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        w_q = quantize(w.detach(), self.method, self.stochastic and self.training, self.level, self.frac_bits)
        return grad_preserve(w_q, w)

    def extra_repr(self) -> str:
        return f"method={self.method}, stochastic={self.stochastic}, level={self.level:.4g}, f={self.frac_bits}"


@dataclass
class QuantTarget:
    """One quantized tensor of one recurrent layer."""

    module_name: str
    module: nn.RNNBase
    param: str
    role: str  # input | hidden | bias
    w0: float
    level: float
    frac_bits: int
    fan_in: int

    @property
    def key(self) -> str:
        return f"{self.module_name}.{self.param}" if self.module_name else self.param


def recurrent_layers(model: nn.Module) -> list[tuple[str, nn.RNNBase]]:
    """All ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` modules of ``model``, with their qualified names."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.RNNBase)]


def plan_targets(model: nn.Module, config: TernaryRNNConfig) -> list[QuantTarget]:
    """The tensors to quantize and their levels (``W0`` from the Glorot limit, rounding_rnn.py L79-82)."""
    targets = []
    for module_name, module in recurrent_layers(model):
        if getattr(module, "proj_size", 0):
            raise IncompatibleWorkloadError(f"LSTM {module_name!r} has proj_size > 0, which this method does not cover")
        directions = 2 if module.bidirectional else 1
        for param in module._flat_weights_names:
            match = _NAME.match(param)
            if match is None:
                continue
            kind, which, layer = match.group(1), match.group(2), int(match.group(3))
            fan_in = module.input_size if layer == 0 else module.hidden_size * directions
            role = "bias" if kind == "bias" else ("input" if which == "ih" else "hidden")
            if not {"input": config.round_input_weights, "hidden": config.round_hid, "bias": config.round_bias}[role]:
                continue
            w0 = (
                glorot_limit(module.hidden_size, module.hidden_size)
                if role == "hidden"
                else glorot_limit(fan_in, module.hidden_size)
            )
            level, frac_bits = _level(config, w0)
            targets.append(QuantTarget(module_name, module, param, role, w0, level, frac_bits, fan_in))
    return targets


def _level(config: TernaryRNNConfig, w0: float) -> tuple[float, int]:
    """(level, frac_bits) of one tensor for the configured method."""
    if config.method == "binary":
        return (w0 if config.binary_h is None else float(config.binary_h)), 0
    if config.method == "pow2_ternary":
        frac_bits = config.pow2_frac_bits
        if frac_bits is None:
            frac_bits = round(-math.log2(w0))
        return 2.0**-frac_bits, frac_bits
    return w0, 0


def attach_quantizers(model: nn.Module, config: TernaryRNNConfig) -> list[QuantTarget]:
    """Register a :class:`WeightQuantizer` parametrization on every target tensor; returns the targets."""
    targets = plan_targets(model, config)
    for t in targets:
        quantizer = WeightQuantizer(config.method, config.stochastic, t.level, t.frac_bits)
        parametrize.register_parametrization(t.module, t.param, quantizer)
    return targets


def bake_quantizers(model: nn.Module, targets: list[QuantTarget]) -> None:
    """Replace each parametrized tensor by its deterministic quantized value (plain parameters, standard keys)."""
    model.eval()
    for t in targets:
        parametrize.remove_parametrizations(t.module, t.param, leave_parametrized=True)


class ClipRealWeights(Callback):
    """BinaryConnect: clip the real weights to ``[-H, H]`` after every optimizer step."""

    def __init__(self, targets: list[QuantTarget]) -> None:
        self.targets = targets

    def after_step(self, trainer: Trainer, model: nn.Module) -> None:
        with torch.no_grad():
            for t in self.targets:
                original: torch.Tensor = getattr(t.module.parametrizations, t.param).original
                original.clamp_(-t.level, t.level)


@COMPRESSORS.register("ternary_rnn")
class TernaryRNN(Compressor):
    """Trains an RNN whose weights and biases are binarized, ternarized or exponentially quantized."""

    info = CompressorInfo(
        name="ternary_rnn",
        paper="1608.06902",
        kind="quantization",
        needs_data=True,
        supports=("rnn",),
        description="RNN/GRU/LSTM weights in {-W0,0,W0}, {-H,H}, pow2-ternary or ±2^k, trained with preserved gradient",
    )
    Config = TernaryRNNConfig

    def apply(self, model: nn.Module, ctx: RunContext) -> CompressedModel:
        config: TernaryRNNConfig = self.config  # type: ignore[assignment]
        if config.init == "scratch":
            model = ctx.workload.build_model()
        if not recurrent_layers(model):
            raise IncompatibleWorkloadError(
                f"Workload {ctx.workload.info.name!r} has no nn.RNN/nn.GRU/nn.LSTM layer for ternary_rnn to quantize"
            )
        targets = attach_quantizers(model, config)
        clip = config.method == "binary" and config.clip_binary
        callbacks: list[Callback] = [ClipRealWeights(targets)] if clip else []
        trainer = ctx.trainer("ternary_rnn", callbacks=callbacks)
        with ctx.phase("train_quantized") as entry:
            history = trainer.fit(model, epochs=config.epochs)
            entry["epochs"] = len(history)
        bake_quantizers(model, targets)
        weight_bits, tensors = storage_report(targets, config.method)
        summary = {
            "method": config.method,
            "stochastic_training": config.stochastic,
            "test_time_rule": "deterministic",
            "init": config.init,
            "epochs": len(history),
            "final_train_loss": history[-1]["train_loss"] if history else None,
            f"val_{ctx.workload.info.metric}_per_epoch": [h.get(f"val_{ctx.workload.info.metric}") for h in history],
            "tensors": tensors,
            **cost_report(model, weight_bits),
        }
        return CompressedModel(model=model, execution="simulated", summary=summary, weight_bits=weight_bits)


def storage_report(targets: list[QuantTarget], method: str) -> tuple[dict[str, float], dict[str, dict[str, Any]]]:
    """``weight_bits`` (state_dict key -> bits/element, plus ``extra:`` level bits) and a per-tensor report.

    Bits per element (METHODOLOGY §6): 1 binary, 2 ternary / pow2-ternary, 1 sign + the exponent bits of the range
    actually used for exponential quantization. Each tensor's shared level adds one float32 scale (binary, ternary)
    or an 8-bit exponent (pow2-ternary level, exponential range offset).
    """
    weight_bits: dict[str, float] = {}
    tensors: dict[str, dict[str, Any]] = {}
    for t in targets:
        w_q = getattr(t.module, t.param).detach()
        bits = storage_bits(method, w_q)
        weight_bits[t.key] = bits
        weight_bits[f"extra:{t.key}.level"] = 32.0 if method in ("binary", "ternary") else 8.0
        tensors[t.key] = {
            "role": t.role,
            "bits_per_element": bits,
            "w0": t.w0,
            "level": None if method == "exponential" else t.level,
            "distinct_values": int(torch.unique(w_q).numel()),
            "zero_fraction": float((w_q == 0).float().mean()),
            "values_allowed": values_allowed(method, w_q, t.level, t.frac_bits),
        }
    return weight_bits, tensors


def values_allowed(method: str, w_q: torch.Tensor, level: float, frac_bits: int = 1) -> bool:
    """Whether every element of ``w_q`` is a value the method can produce."""
    allowed = allowed_values(method, level, frac_bits)
    if allowed is None:  # exponential: +-2^k, k in [low, high + 1] (rounding up from the top exponent)
        k = torch.log2(w_q.abs())
        return bool(torch.all(k == k.round()) and k.min() >= EXP_BITLIMIT[0] and k.max() <= EXP_BITLIMIT[1] + 1)
    return bool(torch.isin(w_q, allowed.to(w_q.dtype)).all())


def cost_report(model: nn.Module, weight_bits: dict[str, float]) -> dict[str, Any]:
    """MACs and BOPs per input token of the recurrent layers (METHODOLOGY §7: BOPs = MACs x w bits x a bits).

    Each weight of ``W_ih`` / ``W_hh`` is used in one multiply-accumulate per token and direction; activations stay
    float32. Embedding and output layers are not counted (they are not quantized). The recurrent weight bits include
    the per-tensor level bits (``extra:`` entries).
    """
    macs = bops = dense_bops = weight_bits_total = dense_weight_bits = 0.0
    for module_name, module in recurrent_layers(model):
        for param in module._flat_weights_names:
            key = f"{module_name}.{param}" if module_name else param
            n = float(getattr(module, param).numel())
            bits = weight_bits.get(key, 32.0)
            weight_bits_total += n * bits
            dense_weight_bits += n * 32.0
            if param.startswith("weight"):
                macs += n
                bops += n * bits * ACTIVATION_BITS
                dense_bops += n * 32.0 * ACTIVATION_BITS
    weight_bits_total += sum(bits for key, bits in weight_bits.items() if key.startswith("extra:"))
    return {
        "recurrent_macs_per_token": macs,
        "recurrent_bops_per_token": bops,
        "recurrent_dense_bops_per_token": dense_bops,
        "recurrent_weight_bits": weight_bits_total,
        "recurrent_dense_weight_bits": dense_weight_bits,
        "recurrent_compression_ratio": dense_weight_bits / weight_bits_total if weight_bits_total else None,
        "activation_bits": ACTIVATION_BITS,
    }
