"""LNS-Madam: low-precision training in a multi-base logarithmic number system (Zhao et al., arXiv 2106.13914).

What it does: every Conv2d/Linear (and, by default, every Embedding table) of the model is replaced by a layer
whose weight exists **only** as int16 codes (sign + (B-1)-bit LNS exponent, ``compressors/lns.py``) and a float
scale; the float weight is materialised inside ``forward`` for the GEMM. The update reads and writes only the codes,
so no high-precision master copy is ever updated or carried from one step to the next (the paper's central claim,
stated in its abstract); the decoded weight and its gradient of the last step may still be held by autograd until
the next forward replaces them, as a dead temporary that no update reads. The model
is trained with the LNS-Madam update applied to the exponent codes (``compressors/madam.py``), with the tensors of
the training datapath quantized as listed in PAPERS.md §7:

- forward: weights and input activations of every GEMM in LNS (``bits``, ``gamma``; nearest rounding);
- backward: the output (activation) gradient entering both backward GEMMs and the weight gradient in LNS
  (``grad_bits``, ``grad_gamma``; stochastic rounding by default);
- weight update: on the stored codes (``weight_bits``, ``weight_gamma``), LNS-Madam ``k -= lr*gamma*round(g^)*sign``.

Learning rate: ``lr`` is the step of ``log2|w|`` per unit of the rounded normalised gradient, as in the public
code (``w <- w * 2^(-lr * round(g^) * sign(w))``), and the default is the public code's 1/128. On a stored grid of
base factor gamma one code is ``1/gamma`` in log2, so 1/128 is 1/16 of an 8-bit (gamma 8) code per unit of
``round(g^)``: the update is rounded onto the grid stochastically by default (unbiased; with ``nearest`` every step
below half a code is lost and only ``lr`` multiples of ``1/gamma`` train). Measured on cifar_resnet18 / Fashion-MNIST
(suite/lns_madam.yaml): 8-bit, 2 epochs, top-1 73.1 at ``lr = 1/8`` (one code per unit), 80.35 at 1/128, 80.55 at
1/64; the earlier default ``1/weight_gamma`` with nearest rounding was replaced for that reason.

Baselines in the same compressor: ``method=sgd|adam`` update the same stored LNS weights in float on a transient
copy and re-encode them to the grid; ``number_format=fixed|float`` uses INT-B / FP-B at the same bitwidths
(with SGD/Adam; LNS-Madam needs LNS). Savings are ``simulated`` (fake-quant GEMMs in fp32); the datapath energy
is an analytic estimate (``compressors/lns_energy.py``).

Faithful: the LNS-Madam update (public code), Madam's clamp (as the top code of a scale ``p_scale * RMS(w0)``),
8-bit LNS forward/backward, training from scratch. Differs / unverified: the paper's exact quantizer scale
granularity and gradient rounding could not be confirmed from the text available here; norm-layer parameters and
biases (< 1 % of parameters) stay fp32 and are trained by Adam (``aux_lr``) in every method; first and last layers
are quantized too (``skip_first_last`` keeps them fp32). Attention's two activation-activation matmuls in
transformers are not quantized (only weight GEMMs are replaced), and the energy estimate prices them at FP32.
Fine-tuning a pretrained model: Madam's clamp at ``3 * RMS(w0)`` clips pretrained outliers (all-MiniLM-L6-v2 has
Linear weights up to 175 x RMS; clipping them destroys the model), so ``clamp=max`` raises the top code to
``max|w0|`` when that is larger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from compressors import COMPRESSORS
from compressors.base import CompressedModel, Compressor, CompressorConfig, CompressorInfo
from compressors.lns import NumberFormat, compute_scale, decode, encode, fake_quantize
from compressors.lns_energy import estimate_training_energy
from compressors.madam import METHODS, QuantizedWeightOptimizer
from harness.context import RunContext


@dataclass(frozen=True)
class QuantSpec:
    """Formats and rounding of one quantized layer."""

    storage: NumberFormat  # stored weights (= weight-update precision)
    forward: NumberFormat  # weights and activations in the forward GEMM
    grad: NumberFormat  # activation and weight gradients
    act_rounding: str = "nearest"
    grad_rounding: str = "stochastic"
    per_channel: bool = False
    p_scale: float = 3.0
    clamp: str = "rms"  # rms: w_max = p_scale * RMS(w0) (Madam); max: also >= max|w0| (no initial weight clipped)


class QuantizedLayer(nn.Module):
    """Base of the quantized Conv2d/Linear: int16 weight codes + scale; float weight only inside forward."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, spec: QuantSpec) -> None:
        super().__init__()
        self.spec = spec
        self.storage = spec.storage
        self.weight_shape = tuple(weight.shape)
        scale = compute_scale(weight, spec.per_channel, statistic="rms", factor=spec.p_scale)
        if spec.clamp == "max":
            scale = torch.maximum(scale, compute_scale(weight, spec.per_channel, statistic="max"))
        self.register_buffer("scale", scale)
        self.register_buffer("codes", encode(weight, spec.storage, scale, "nearest"))
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.live_weight: torch.Tensor | None = None

    def materialize(self) -> torch.Tensor:
        """Decode the weight for one forward; in training keep it (leaf, grad-quantizing hook) until ``release``."""
        spec = self.spec
        w = decode(self.codes, spec.storage, self.scale)
        if spec.forward != spec.storage:
            w = decode(encode(w, spec.forward, self.scale, "nearest"), spec.forward, self.scale)
        if self.training and torch.is_grad_enabled():
            w.requires_grad_(True)
            w.register_hook(self._quantize_grad)
            self.live_weight = w
        return w

    def release(self) -> None:
        self.live_weight = None

    def trained_tensors(self) -> list[torch.Tensor]:
        """The tensor the update reads the gradient of (the Trainer clips it with the parameters)."""
        return [self.live_weight] if self.live_weight is not None else []

    def _quantize_grad(self, grad: torch.Tensor) -> torch.Tensor:
        return fake_quantize(grad, self.spec.grad, rounding=self.spec.grad_rounding)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """LNS activations with a straight-through gradient."""
        q = fake_quantize(x, self.spec.forward, rounding=self.spec.act_rounding)
        return x + (q - x).detach() if x.requires_grad else q

    def quantize_output_grad(self, y: torch.Tensor) -> torch.Tensor:
        """Identity forward; the gradient w.r.t. the GEMM output is quantized before both backward GEMMs."""
        if y.requires_grad:
            y.register_hook(self._quantize_grad)
        return y


class LNSConv2d(QuantizedLayer):
    def __init__(self, conv: nn.Conv2d, spec: QuantSpec) -> None:
        super().__init__(conv.weight, conv.bias, spec)
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        if conv.padding_mode != "zeros":
            raise ValueError(f"padding_mode {conv.padding_mode!r} is not supported by the quantized conv")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(
            self.quantize_input(x), self.materialize(), self.bias, self.stride, self.padding, self.dilation, self.groups
        )
        return self.quantize_output_grad(y)


class LNSLinear(QuantizedLayer):
    def __init__(self, linear: nn.Linear, spec: QuantSpec) -> None:
        super().__init__(linear.weight, linear.bias, spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize_output_grad(F.linear(self.quantize_input(x), self.materialize(), self.bias))


class LNSEmbedding(QuantizedLayer):
    """An embedding table stored as LNS codes (a lookup, not a GEMM: no activation or output-gradient quantization;
    its weight gradient is quantized like every other weight gradient)."""

    def __init__(self, embedding: nn.Embedding, spec: QuantSpec) -> None:
        if embedding.max_norm is not None or embedding.sparse:
            raise ValueError("max_norm / sparse embeddings are not supported by the LNS embedding")
        super().__init__(embedding.weight, None, spec)
        self.padding_idx, self.scale_grad_by_freq = embedding.padding_idx, embedding.scale_grad_by_freq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.embedding(x, self.materialize(), self.padding_idx, scale_grad_by_freq=self.scale_grad_by_freq)


def quantize_model(
    model: nn.Module, spec: QuantSpec, skip: tuple[str, ...] = (), embeddings: bool = True
) -> dict[str, QuantizedLayer]:
    """Replace Conv2d/Linear (and, with ``embeddings``, Embedding) modules except names in ``skip`` in place.

    Returns the new layers by name.
    """
    replaced: dict[str, QuantizedLayer] = {}
    kinds = (nn.Conv2d, nn.Linear, nn.Embedding) if embeddings else (nn.Conv2d, nn.Linear)
    for name, module in list(model.named_modules()):
        if name in skip or not isinstance(module, kinds):
            continue
        if isinstance(module, nn.Embedding):
            new: QuantizedLayer = LNSEmbedding(module, spec)
        else:
            new = LNSConv2d(module, spec) if isinstance(module, nn.Conv2d) else LNSLinear(module, spec)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
        replaced[name] = new
    return replaced


@dataclass
class LNSMadamConfig(CompressorConfig):
    """Options (``--set key=value``). ``weight_bits``/``weight_gamma`` default to ``bits``/``gamma``."""

    version: ClassVar[int] = 2  # 2: lr=None means the public 1/128 (was 1/weight_gamma); stochastic update rounding

    method: str = "lns_madam"  # lns_madam | sgd | adam (update rule of the stored low-precision weights)
    number_format: str = "lns"  # lns | fixed | float
    bits: int = 8
    gamma: float = 8.0
    grad_bits: int = 8
    grad_gamma: float = 8.0
    weight_bits: int | None = None
    weight_gamma: float | None = None
    per_channel: bool = False
    act_rounding: str = "nearest"
    grad_rounding: str = "stochastic"
    update_rounding: str = "stochastic"
    lr: float | None = None  # None: lns_madam 1/128 (public code), sgd the recipe's lr, adam 1e-3
    aux_lr: float = 1e-3
    p_scale: float = 3.0
    clamp: str = "rms"  # rms: Madam's w_max = p_scale * RMS(w0); max: w_max >= max|w0| (pretrained models)
    quantize_embeddings: bool = True
    g_bound: float = 10.0
    init: str = "scratch"  # scratch (paper: trained from scratch) | baseline (start from the dense model)
    epochs: int | None = None
    skip_first_last: bool = False
    accumulator_bits: int = 24

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.method == "lns_madam" and self.number_format != "lns":
            raise ValueError("method=lns_madam updates LNS exponents; use number_format=lns (or method=sgd/adam)")
        if self.clamp not in ("rms", "max"):
            raise ValueError(f"clamp must be 'rms' or 'max', got {self.clamp!r}")
        if self.init not in ("scratch", "baseline"):
            raise ValueError(f"init must be 'scratch' or 'baseline', got {self.init!r}")

    def spec(self) -> QuantSpec:
        kind = self.number_format
        return QuantSpec(
            storage=NumberFormat(kind, self.weight_bits or self.bits, self.weight_gamma or self.gamma),
            forward=NumberFormat(kind, self.bits, self.gamma),
            grad=NumberFormat(kind, self.grad_bits, self.grad_gamma),
            act_rounding=self.act_rounding,
            grad_rounding=self.grad_rounding,
            per_channel=self.per_channel,
            p_scale=self.p_scale,
            clamp=self.clamp,
        )


@COMPRESSORS.register("lns_madam")
class LNSMadamCompressor(Compressor):
    info = CompressorInfo(
        name="lns_madam",
        paper="2106.13914",
        kind="training",
        needs_data=True,
        supports=("cnn", "mlp", "transformer"),
        description="LNS-Madam: training on LNS weight codes (no fp32 master copy) with a multiplicative update",
    )
    Config = LNSMadamConfig

    def apply(self, model: nn.Module, ctx: RunContext) -> CompressedModel:
        cfg: LNSMadamConfig = self.config  # type: ignore[assignment]
        if cfg.init == "scratch":
            torch.manual_seed(ctx.seed)
            model = ctx.workload.build_model()
        spec = cfg.spec()
        skip = _first_last(model) if cfg.skip_first_last else ()
        layers = quantize_model(model, spec, skip, embeddings=cfg.quantize_embeddings)
        recipe = ctx.workload.recipe.replace(epochs=cfg.epochs or ctx.workload.recipe.epochs)
        factory = _optimizer_factory(cfg, list(layers.values()), ctx.seed)
        trainer = ctx.trainer(f"lns-{cfg.method}", recipe=recipe, optimizer_factory=factory)
        with ctx.phase("low_precision_training") as phase:
            history = trainer.fit(model)
            phase["epochs"] = recipe.epochs
        train_samples = len(ctx.workload.dataloader("train").dataset)
        energy = estimate_training_energy(
            model,
            ctx.workload.example_inputs(1, ctx.device),
            spec.forward,
            spec.grad,
            samples=train_samples * recipe.epochs,
            accumulator_bits=cfg.accumulator_bits,
            quantized_layers=[name for name, layer in layers.items() if not isinstance(layer, LNSEmbedding)],
        )
        summary = _summary(cfg, spec, layers, history, energy, recipe)
        weight_bits = {f"{name}.codes": float(spec.storage.bits) for name in layers}
        return CompressedModel(model=model, execution="simulated", summary=summary, weight_bits=weight_bits)


def _first_last(model: nn.Module) -> tuple[str, ...]:
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return (names[0], names[-1]) if names else ()


def _optimizer_factory(cfg: LNSMadamConfig, layers: list[QuantizedLayer], seed: int) -> Any:
    def factory(model: nn.Module, recipe: Any) -> QuantizedWeightOptimizer:
        lr = cfg.lr if cfg.lr is not None else {"lns_madam": 1 / 128, "sgd": recipe.lr, "adam": 1e-3}[cfg.method]
        float_params = [p for p in model.parameters() if p.requires_grad]
        return QuantizedWeightOptimizer(
            layers,
            float_params,
            method=cfg.method,
            lr=lr,
            aux_lr=cfg.aux_lr,
            update_rounding=cfg.update_rounding,
            g_bound=cfg.g_bound,
            momentum=recipe.momentum,
            weight_decay=recipe.weight_decay if cfg.method == "sgd" else 0.0,
            seed=seed,
        )

    return factory


def _summary(
    cfg: LNSMadamConfig, spec: QuantSpec, layers: dict[str, QuantizedLayer], history: list, energy: dict, recipe: Any
) -> dict[str, Any]:
    n_quant = sum(layer.codes.numel() for layer in layers.values())
    return {
        "method": cfg.method,
        "formats": {
            "weights_stored": spec.storage.describe(),
            "forward": spec.forward.describe(),
            "gradients": spec.grad.describe(),
        },
        "bits_per_tensor": {name: spec.storage.bits for name in layers},
        "quantized_layers": len(layers),
        "quantized_weights": n_quant,
        "float_master_copy": False,
        "weight_storage": "int16 codes + per-tensor/channel fp32 scale (no float master copy)",
        "training_history": history,
        "training_recipe": recipe.to_dict(),
        "energy": energy,
    }
