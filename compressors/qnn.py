"""QNN / BNN: quantized neural networks with binary or k-bit weights and activations (Hubara, Courbariaux, Soudry,
El-Yaniv, Bengio, JMLR'18, arXiv 1609.07061).

What it does (``apply``): every ``nn.Linear``/``nn.Conv2d`` becomes a quantized layer (see
:mod:`compressors.qnn_layers`) that keeps its real weights, clipped to [-1, 1], and quantizes weights and inputs in
each forward pass; ``ReLU``s become ``Hardtanh`` (a sign after a ReLU would be constant); the model is trained with
the harness Trainer, and a callback clips the real weights to [-1, 1] after every optimizer step (§2.4, Alg. 1) and
optionally quantizes the weight gradients to ``g_bits``. A fully binary model (``w_bits = a_bits = 1``) is then
converted into an inference model whose binary layers run the packed XNOR-popcount kernel
(:mod:`compressors.kernels`): that model is returned with ``execution='executed'`` and the fake-quant model as the
``fake_quant`` variant. Any other bit widths give ``execution='simulated'``. In a recurrent model (LSTM/GRU language
models) the recurrent layers become :class:`compressors.qnn_rnn.QuantRNN` (k-bit weights and k-bit recurrent-state
inputs, §5's quantized RNNs) and the embedding and softmax stay float; those runs are always simulated.

Faithful: eq. (1) sign with sign(0) = +1, eq. (2) stochastic binarization, eq. (4) STE with the |r| <= 1 cancel,
real-weight clipping, LinearQuant/LogQuant (§4), the first layer on 8-bit fixed-point input (§2.5), shift-based BN
(Alg. 3) and shift-based AdaMax (Alg. 4) as options, Adam with no weight decay by default, BN kept in float.
Differs: training starts from the trained dense baseline (clipped) rather than from scratch, for the workload's
recipe length (the paper trains 500-1000 epochs); the workload's loss is used (the MLP workload's default is the
paper's squared hinge); Theano's Glorot-based per-layer learning-rate scale (``W_LR_scale``) is not applied; the
fixed-point input is signed (normalised data) instead of unsigned pixels; a BatchNorm is added after the output
layer only where the model has none (the paper's nets all end in BN); ``g_bits`` quantizes the weight gradients
and each layer's incoming error with LogQuant anchored at the tensor maximum (the paper's exact gradient
quantizer is not specified beyond "6 bits"). Layer order: where the float architecture puts an activation right
before a BatchNorm (AlexNetOWT_BN's conv -> pool -> ReLU -> BN in conv2-5), the Hardtanh would saturate the raw
binary-conv sums (integers up to the fan-in) into their signs and cancel their gradients; ``bn_before_activation``
(default on) swaps each such pair so that BN feeds the Hardtanh, which is the order of the authors' binary AlexNet
(conv -> pool -> BN -> hardtanh, BinaryNet.pytorch ``models/alexnet_binary.py``). Off, the float order is kept.
Measured (suite/qnn.yaml): AlexNet-BN w1/a2 after 5 epochs: 79.9 / 76.6 top-1 (lr 3e-3 / 5e-4) with the swap,
16.9 / 42.2 without.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from compressors import COMPRESSORS
from compressors.base import CompressedModel, Compressor, CompressorConfig, CompressorInfo, IncompatibleWorkloadError
from compressors.kernels import binary_ops
from compressors.qnn_layers import (
    FULL_PRECISION,
    PackedBinaryConv2d,
    PackedBinaryLinear,
    QuantConv2d,
    QuantLinear,
    ShiftAdaMax,
    ShiftBatchNorm,
    from_float,
)
from compressors.qnn_rnn import QuantRNN
from compressors.quant import quantize_gradient
from harness.context import RunContext
from harness.train import Callback, Trainer
from workloads.base import Recipe

QUANT_TYPES = (QuantLinear, QuantConv2d)
RECURRENT_TYPES = (nn.LSTM, nn.GRU)


@dataclass
class QNNConfig(CompressorConfig):
    """QNN options (``--set w_bits=1 a_bits=2``).

    Attributes:
        w_bits: weight bits: 1 = binary (sign), 2..31 = LinearQuant/LogQuant, 32 = float.
        a_bits: activation (layer input) bits, same encoding; the first layer's input uses ``input_bits`` instead.
        g_bits: bits of the quantized gradients (paper: 6); 0 = full-precision gradients.
        stochastic_weights: stochastic binarization / rounding of the weights during training (deterministic at
            evaluation); separate from the activations' flag as in the official configurations.
        stochastic_activations: the same for the activations.
        weight_quant: 'linear' (LinearQuant) or 'log' (LogQuant) for 2..31-bit weights.
        input_bits: fixed-point bits of the first layer's input (paper: 8).
        input_frac_bits: fractional bits of that fixed-point input (step 2^-input_frac_bits).
        shift_bn: replace BatchNorm by shift-based BN (Alg. 3).
        optimizer: 'adam' (paper), 'shift_adamax' (Alg. 4) or 'recipe' (the workload's optimizer).
        lr: learning rate for 'adam'/'shift_adamax' (mnist.py: 3e-3).
        epochs: training epochs; None = the workload recipe's.
        replace_relu: turn ReLU modules into Hardtanh (needed for binary activations).
        output_bn: add a BatchNorm after the output Linear when the model has none there.
        bn_before_activation: in a Sequential, swap "activation -> BatchNorm" pairs into "BatchNorm -> Hardtanh".
        executed: build the packed-kernel inference model for fully binary networks.
        require_bn: refuse a CNN/MLP without any BatchNorm when activations are quantized (the papers' binary
            networks normalise before every binarized activation; without it training ends at chance).
    """

    # 2: bn_before_activation (default on) changes the converted order of activation -> BN models
    # 3: one 'stochastic' flag split into stochastic_weights and stochastic_activations
    version = 3
    w_bits: int = 1
    a_bits: int = 1
    g_bits: int = 0
    stochastic_weights: bool = False
    stochastic_activations: bool = False
    weight_quant: str = "linear"
    input_bits: int = 8
    input_frac_bits: int = 5
    shift_bn: bool = False
    optimizer: str = "adam"
    lr: float = 3e-3
    epochs: int | None = None
    replace_relu: bool = True
    output_bn: bool = True
    bn_before_activation: bool = True
    executed: bool = True
    require_bn: bool = True

    def __post_init__(self) -> None:
        for name in ("w_bits", "a_bits"):
            if not 1 <= getattr(self, name) <= FULL_PRECISION:
                raise ValueError(f"{name} must be in 1..32, got {getattr(self, name)}")
        if self.g_bits != 0 and self.g_bits < 2:
            raise ValueError(
                f"g_bits must be 0 (off) or >= 2 (LogQuant needs a sign and an exponent bit), got {self.g_bits}"
            )
        if self.weight_quant not in ("linear", "log"):
            raise ValueError(f"weight_quant must be 'linear' or 'log', got {self.weight_quant!r}")
        if self.optimizer not in ("adam", "shift_adamax", "recipe"):
            raise ValueError(f"optimizer must be 'adam', 'shift_adamax' or 'recipe', got {self.optimizer!r}")
        if not 2 <= self.input_bits <= 16:
            raise ValueError(f"input_bits must be in 2..16, got {self.input_bits}")


class ClipWeights(Callback):
    """After every step, clip the real weights of quantized layers to [-1, 1] (QNN Alg. 1); optionally quantize
    the weight gradients to ``g_bits`` after backward."""

    def __init__(self, g_bits: int = 0) -> None:
        self.g_bits = g_bits

    def after_backward(self, trainer: Trainer, model: nn.Module) -> None:
        if not self.g_bits:
            return
        for module in model.modules():
            if isinstance(module, QUANT_TYPES) and module.weight.grad is not None:
                module.weight.grad.copy_(quantize_gradient(module.weight.grad, self.g_bits))

    def after_step(self, trainer: Trainer, model: nn.Module) -> None:
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, QUANT_TYPES) and module.w_bits < FULL_PRECISION:
                    module.weight.clamp_(-1.0, 1.0)


def quantize_model(model: nn.Module, cfg: QNNConfig) -> nn.Module:
    """Replace Linear/Conv2d (the first one gets fixed-point input), ReLU -> Hardtanh, BN -> shift BN if asked.

    A model with LSTM/GRU layers has those replaced by :class:`QuantRNN` instead, and its embedding and softmax
    layers stay float (the paper's quantized RNNs quantize the recurrent layers' products; see ``qnn_rnn``).
    """
    if any(isinstance(m, RECURRENT_TYPES) for m in model.modules()):
        return _quantize_recurrent(model, cfg)
    first_done = False
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Linear, nn.Conv2d)) and not isinstance(child, QUANT_TYPES):
                quant = dict(w_bits=cfg.w_bits, a_bits=cfg.a_bits, stochastic_weights=cfg.stochastic_weights,
                             stochastic_activations=cfg.stochastic_activations,
                             weight_quant=cfg.weight_quant, g_bits=cfg.g_bits or None, first=not first_done,
                             input_bits=cfg.input_bits, input_frac_bits=cfg.input_frac_bits)  # fmt: skip
                setattr(parent, name, from_float(child, **quant))
                first_done = True
            elif cfg.replace_relu and isinstance(child, (nn.ReLU, nn.ReLU6)):
                setattr(parent, name, nn.Hardtanh())
            elif cfg.shift_bn and isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, ShiftBatchNorm.from_batchnorm(child))
    if cfg.output_bn:
        _add_output_bn(model, cfg)
    if cfg.bn_before_activation:
        norm_before_activation(model)
    return model


def norm_before_activation(model: nn.Module) -> list[str]:
    """In every Sequential, swap each Hardtanh directly followed by a BatchNorm (the BN then feeds the Hardtanh).

    The modules keep their objects (and trained statistics); only their positions change. Returns the BNs' new names.
    """
    moved = []
    for path, seq in list(model.named_modules()):
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for i in range(len(names) - 1):
            act, norm = seq._modules[names[i]], seq._modules[names[i + 1]]
            if isinstance(act, nn.Hardtanh) and isinstance(norm, nn.modules.batchnorm._BatchNorm):
                seq._modules[names[i]], seq._modules[names[i + 1]] = norm, act
                moved.append(f"{path}.{names[i]}" if path else names[i])
    return moved


def _quantize_recurrent(model: nn.Module, cfg: QNNConfig) -> nn.Module:
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, RECURRENT_TYPES):
                quant = dict(w_bits=cfg.w_bits, a_bits=cfg.a_bits, stochastic_weights=cfg.stochastic_weights,
                             stochastic_activations=cfg.stochastic_activations,
                             weight_quant=cfg.weight_quant, g_bits=cfg.g_bits or None)  # fmt: skip
                setattr(parent, name, QuantRNN.from_float(child, **quant))
    return model


def _add_output_bn(model: nn.Module, cfg: QNNConfig) -> None:
    """Append a BatchNorm1d to the last QuantLinear unless a BatchNorm already follows it in its Sequential."""
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, QUANT_TYPES)]
    if not named or not isinstance(named[-1][1], QuantLinear):
        return
    path, last = named[-1]
    parent_path, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_path) if parent_path else model
    if isinstance(parent, nn.Sequential):
        children = list(parent.children())
        index = children.index(last)
        if index + 1 < len(children) and isinstance(children[index + 1], nn.modules.batchnorm._BatchNorm):
            return
    bn_cls = ShiftBatchNorm if cfg.shift_bn else nn.BatchNorm1d
    bn = bn_cls(last.out_features).to(last.weight.device)
    setattr(parent, attr, nn.Sequential(last, bn))


def to_executed(model: nn.Module) -> nn.Module:
    """Copy of a fully binary fake-quant model whose binary layers run the packed XNOR kernel."""
    executed = copy.deepcopy(model).eval()
    for parent in list(executed.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, QuantLinear):
                setattr(parent, name, PackedBinaryLinear(child))
            elif isinstance(child, QuantConv2d):
                setattr(parent, name, PackedBinaryConv2d(child))
    return executed


def constant_input_layers(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[str]:
    """Binary-input layers whose input has no negative value on ``inputs`` (sign would be constantly +1)."""
    seen: dict[str, bool] = {}
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, name=name: seen.__setitem__(name, bool((args[0] < 0).any())))
        for name, m in model.named_modules()
        if isinstance(m, QUANT_TYPES) and not m.first and m.a_bits < FULL_PRECISION
    ]
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return sorted(name for name, negative in seen.items() if not negative)


def is_fully_binary(model: nn.Module) -> bool:
    """Every quantized layer binary and runnable by the packed kernel (recurrent layers are not)."""
    if any(isinstance(m, QuantRNN) for m in model.modules()):
        return False
    layers = [m for m in model.modules() if isinstance(m, QUANT_TYPES)]
    return bool(layers) and all(
        m.w_bits == 1 and (m.a_bits == 1 or m.first) and not (isinstance(m, QuantConv2d) and m.groups != 1)
        for m in layers
    )


@COMPRESSORS.register("qnn")
class QNN(Compressor):
    info = CompressorInfo(
        name="qnn",
        paper="1609.07061",
        kind="quantization",
        needs_data=True,
        supports=("cnn", "mlp", "rnn"),
        description="binarized / k-bit weights and activations with STE; packed XNOR-popcount inference",
    )
    Config = QNNConfig

    def check_compatible(self, workload: Any) -> None:
        super().check_compatible(workload)
        cfg: QNNConfig = self.config  # type: ignore[assignment]
        if not cfg.require_bn or cfg.a_bits >= 32 or workload.info.kind not in ("cnn", "mlp"):
            return
        if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in workload.build_model().modules()):
            raise IncompatibleWorkloadError(
                f"qnn with {cfg.a_bits}-bit activations needs BatchNorm before the quantized activations, and "
                f"{workload.info.name!r} has none (it trains to chance). Use a BN network (mlp, alexnet_bn, "
                f"vgg16_bn, resnet18) or --set require_bn=false to run it anyway (recorded in the config)."
            )

    def apply(self, model: nn.Module, ctx: RunContext) -> CompressedModel:
        cfg: QNNConfig = self.config  # type: ignore[assignment]
        model = quantize_model(model, cfg).to(ctx.device)
        constant = constant_input_layers(model, ctx.workload.example_inputs(16, ctx.device))
        if constant:
            ctx.log(f"warning: inputs of {constant} are never negative (a functional ReLU the compressor cannot "
                    "replace?): their binarized activations are constant +1")  # fmt: skip
        recipe = self._recipe(ctx.workload.recipe)
        factory = (lambda m, r: ShiftAdaMax([p for p in m.parameters() if p.requires_grad], lr=r.lr)) if (
            cfg.optimizer == "shift_adamax") else None  # fmt: skip
        with ctx.phase("qnn-train") as phase:
            trainer = ctx.trainer("qnn", recipe=recipe, callbacks=[ClipWeights(cfg.g_bits)], optimizer_factory=factory)
            history = trainer.fit(model)
            phase["epochs"] = len(history)
        model.eval()
        summary = self._summary(model, cfg, history)
        summary["constant_binary_input_layers"] = constant
        weight_bits = layer_weight_bits(model)
        if cfg.executed and is_fully_binary(model):
            with ctx.phase("pack"):
                executed = to_executed(model)
            summary["kernel"] = binary_ops.backend_name(ctx.device)
            summary["packed_layers"] = sorted(n for n, m in executed.named_modules() if hasattr(m, "packed_weight"))
            # packed int64 words really hold 64 weights each (stored size); '<layer>.weight' keeps the BOPs count
            weight_bits.update({f"{name}.packed_weight": 64.0 for name in summary["packed_layers"]})
            return CompressedModel(
                model=executed, execution="executed", summary=summary, variants={"fake_quant": model},
                weight_bits=weight_bits,
            )  # fmt: skip
        return CompressedModel(model=model, execution="simulated", summary=summary, weight_bits=weight_bits)

    def _recipe(self, recipe: Recipe) -> Recipe:
        cfg: QNNConfig = self.config  # type: ignore[assignment]
        changes: dict[str, Any] = {"epochs": cfg.epochs if cfg.epochs is not None else recipe.epochs}
        if cfg.optimizer != "recipe":
            changes.update(optimizer="adam", lr=cfg.lr, weight_decay=0.0)
        return recipe.replace(**changes)

    @staticmethod
    def _summary(model: nn.Module, cfg: QNNConfig, history: list[dict[str, float]]) -> dict[str, Any]:
        layers = {}
        for name, m in model.named_modules():
            if isinstance(m, QUANT_TYPES):
                with torch.no_grad():
                    values = torch.unique(m.quant_weight()).numel()
                layers[name] = {"w_bits": m.w_bits, "a_bits": f"fixed-point {m.input_bits}" if m.first else m.a_bits,
                                "distinct_weight_values": int(values), "params": m.weight.numel()}  # fmt: skip
            elif isinstance(m, QuantRNN):
                layers.update(_recurrent_summary(name, m))
        return {"config": cfg.to_dict(), "layers": layers, "training": history[-1] if history else {}}


def _recurrent_summary(name: str, rnn: QuantRNN) -> dict[str, Any]:
    with torch.no_grad():
        weights = rnn.quantized_weights()
    rows = {}
    for param, w in weights.items():
        a_bits = "float (embedding)" if param == "weight_ih_l0" else rnn.a_bits
        rows[f"{name}.{param}"] = {"w_bits": rnn.w_bits, "a_bits": a_bits, "params": w.numel(),
                                   "distinct_weight_values": int(torch.unique(w).numel())}  # fmt: skip
    return rows


def layer_weight_bits(model: nn.Module) -> dict[str, float]:
    """Bits for the size and BOPs meters: ``"<layer>.weight"`` -> weight bits (a state_dict key of the fake-quant
    model) and ``"activation:<layer>"`` -> input bits (the first layer's fixed-point width); float tensors are
    counted at their dtype width by the meters."""
    bits: dict[str, float] = {}
    for name, m in model.named_modules():
        if isinstance(m, QUANT_TYPES) and m.w_bits < FULL_PRECISION:
            bits[f"{name}.weight" if name else "weight"] = float(m.w_bits)
            a_bits = m.input_bits if m.first else m.a_bits
            if a_bits < FULL_PRECISION:
                bits[f"activation:{name}"] = float(a_bits)
        elif isinstance(m, QuantRNN) and m.w_bits < FULL_PRECISION:
            weights = {param: p.numel() for param, p in m.named_parameters() if param.startswith("weight_")}
            bits.update({f"{name}.{param}": float(m.w_bits) for param in weights})
            bits[f"{name}.weight"] = float(m.w_bits)  # BOPs key: the module's matmuls are counted at its name
            # the first layer's input (the embedding) stays float: MAC-weighted mean input bits (BOPs are linear)
            float_macs = weights["weight_ih_l0"]
            total = sum(weights.values())
            bits[f"activation:{name}"] = (float_macs * FULL_PRECISION + (total - float_macs) * m.a_bits) / total
    return bits
