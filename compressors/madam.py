"""Madam (Bernstein et al., arXiv 2006.14560), IntegerMadam, and LNS-Madam (Zhao et al., arXiv 2106.13914).

``Madam``, ``IntegerMadam`` and ``LNSMadam`` are faithful ports of the public optimizers (jxbz/madam
``pytorch/optim/madam.py`` and ``int_madam.py``; jiaweizzhao/lns-madam-optimizer ``lns_madam.py``) over ordinary
float parameters; each can be the Trainer's optimizer for any workload through :func:`optimizer_factory`.

Madam (paper Alg. 1; code L7-44): per tensor ``w_max = p_scale * RMS(w_0)``; ``v = 0.999 v + 0.001 g^2``;
``g^ = clip(g / sqrt(v / (1 - 0.999^t)), +-g_bound)`` (NaN -> 0, no epsilon); ``w <- clip(w * exp(-lr g^ sign(w)),
+-w_max)``. Defaults lr 0.01, p_scale 3, g_bound 10. A parameter that is exactly zero never moves (sign 0), as in
the original.

IntegerMadam: ``w = sign(w) w_max exp(-base_lr n)`` with an integer ``n`` in ``[0, levels-1]`` initialised at
random (as the public code does: ``randint(0, levels-1)``) and ``n <- clip(n + round(lr_factor g^) sign(w))``.

LNS-Madam (float form, the public code): ``g^`` is additionally rounded to an integer and the update is base 2,
``w <- w * 2^(-lr g^ sign(w))`` with ``lr = 1/128``, so ``log2|w|`` moves on a grid of ``1/128``.

:class:`QuantizedWeightOptimizer` trains layers whose weights exist **only** as integer codes (see
``compressors/lns_madam.py``): LNS-Madam there is the same update applied to the codes directly,
``k <- clip(k - round(lr * gamma * round(g^)) * sign(w), 1, N)``; SGD and Adam baselines compute their update in
float on a transient decoded copy and re-encode it to the same grid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from compressors.lns import decode, encode

METHODS = ("lns_madam", "sgd", "adam")


def normalized_grad(state: dict[str, Any], grad: torch.Tensor, g_bound: float) -> torch.Tensor:
    """Madam's normalised gradient (Alg. 1): bias-corrected RMS normalisation, NaN -> 0, clip to +-g_bound."""
    if "exp_avg_sq" not in state:
        state["step"] = 0
        state["exp_avg_sq"] = torch.zeros_like(grad)
    state["step"] += 1
    bias_correction = 1 - 0.999 ** state["step"]
    state["exp_avg_sq"] = 0.999 * state["exp_avg_sq"] + 0.001 * grad**2
    g_normed = grad / (state["exp_avg_sq"] / bias_correction).sqrt()
    g_normed[torch.isnan(g_normed)] = 0
    return g_normed.clamp_(-g_bound, g_bound)


class Madam(Optimizer):
    """Madam (arXiv 2006.14560, Alg. 1); exact port of jxbz/madam ``pytorch/optim/madam.py``."""

    def __init__(self, params: Iterable[Any], lr: float = 0.01, p_scale: float = 3.0, g_bound: float = 10.0) -> None:
        self.p_scale, self.g_bound = p_scale, g_bound
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "max" not in state:
                    state["max"] = self.p_scale * (p * p).mean().sqrt().item()
                g_normed = normalized_grad(state, p.grad, self.g_bound)
                p.mul_(torch.exp(-group["lr"] * g_normed * torch.sign(p)))
                p.clamp_(-state["max"], state["max"])
        return loss


class LNSMadam(Madam):
    """LNS-Madam in float (arXiv 2106.13914 Alg. 1); port of jiaweizzhao/lns-madam-optimizer ``lns_madam.py``."""

    def __init__(self, params: Iterable[Any], lr: float = 1 / 128, p_scale: float = 3.0, g_bound: float = 10.0) -> None:
        super().__init__(params, lr=lr, p_scale=p_scale, g_bound=g_bound)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "max" not in state:
                    state["max"] = self.p_scale * (p * p).mean().sqrt().item()
                g_normed = normalized_grad(state, p.grad, self.g_bound).round_()
                p.mul_(torch.exp2(-group["lr"] * g_normed * torch.sign(p)))
                p.clamp_(-state["max"], state["max"])
        return loss


class IntegerMadam(Optimizer):
    """12-bit integer Madam; exact port of jxbz/madam ``pytorch/optim/int_madam.py`` (random integer init)."""

    def __init__(
        self,
        params: Iterable[Any],
        base_lr: float = 1e-3,
        lr_factor: float = 10.0,
        levels: int = 4096,
        p_scale: float = 3.0,
        g_bound: float = 10.0,
    ) -> None:
        self.p_scale, self.g_bound = p_scale, g_bound
        super().__init__(params, {"base_lr": base_lr, "lr_factor": lr_factor, "levels": levels})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            levels = group["levels"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "max" not in state:
                    state["max"] = self.p_scale * (p * p).mean().sqrt().item()
                    state["integer"] = torch.randint_like(p, low=0, high=levels - 1)
                g_normed = normalized_grad(state, p.grad, self.g_bound)
                rounded = torch.round(g_normed * group["lr_factor"]) * torch.sign(p)
                state["integer"] = (state["integer"] + rounded).clamp_(0, levels - 1)
                p.copy_(torch.sign(p) * state["max"] * torch.exp(-group["base_lr"] * state["integer"]))
        return loss


def optimizer_factory(name: str = "madam", **kwargs: Any) -> Callable[[nn.Module, Any], Optimizer]:
    """A Trainer ``optimizer_factory`` (``ctx.trainer(..., optimizer_factory=...)``) over all trainable parameters."""
    classes = {"madam": Madam, "lns_madam": LNSMadam, "integer_madam": IntegerMadam}
    if name not in classes:
        raise ValueError(f"Unknown Madam variant {name!r}; use one of {sorted(classes)}")

    def factory(model: nn.Module, recipe: Any) -> Optimizer:
        return classes[name]([p for p in model.parameters() if p.requires_grad], **kwargs)

    return factory


class QuantizedWeightOptimizer(Optimizer):
    """Updates layers that hold their weights only as integer codes, plus the few float parameters left.

    Group 0 holds each quantized layer's ``codes`` buffer (int16; updated in place), group 1 the float parameters
    (norm layers, biases), trained by Adam in every method so that only the update rule of the quantized weights
    differs between LNS-Madam and its SGD/Adam baselines. A quantized layer exposes ``codes``, ``scale``,
    ``storage`` (its NumberFormat), ``live_weight`` (the transient float weight of the last training forward, whose
    ``.grad`` the backward filled) and ``release()``.

    Args:
        layers: the quantized layers.
        float_params: remaining trainable float parameters.
        method: 'lns_madam', 'sgd' or 'adam'.
        lr: learning rate of the quantized weights (LNS-Madam: log2 step per unit of rounded g^, default 1/128).
        aux_lr: Adam learning rate of the float parameters.
        update_rounding: rounding of the update onto the grid ('nearest' or 'stochastic').
        g_bound: Madam's clip of the normalised gradient.
        momentum, weight_decay: SGD baseline's settings.
    """

    def __init__(
        self,
        layers: list[nn.Module],
        float_params: list[nn.Parameter],
        method: str = "lns_madam",
        lr: float = 1 / 128,
        aux_lr: float = 1e-3,
        update_rounding: str = "stochastic",
        g_bound: float = 10.0,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        seed: int = 0,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"Unknown method {method!r}; use one of {METHODS}")
        self.layers, self.method, self.update_rounding, self.g_bound = layers, method, update_rounding, g_bound
        self.generator = torch.Generator().manual_seed(seed)
        groups = [{"params": [m.codes for m in layers], "lr": lr, "momentum": momentum, "weight_decay": weight_decay}]
        super().__init__(groups, {})
        self.aux = torch.optim.Adam(float_params, lr=aux_lr) if float_params else None
        if self.aux is not None:
            self.add_param_group({"params": float_params, "lr": aux_lr, "aux": True})

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["aux"] = self.aux.state_dict() if self.aux is not None else None
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        aux = state_dict.pop("aux", None)
        super().load_state_dict(state_dict)
        if self.aux is not None and aux is not None:
            self.aux.load_state_dict(aux)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = closure() if closure is not None else None
        group = self.param_groups[0]
        for layer in self.layers:
            live = layer.live_weight
            if live is None or live.grad is None:
                layer.release()
                continue
            state = self.state[layer.codes]
            if self.method == "lns_madam":
                self._lns_madam(layer, live.grad, state, group["lr"])
            else:
                self._float_update(layer, live.grad, state, group)
            layer.release()
        if self.aux is not None:
            self.aux.param_groups[0]["lr"] = self.param_groups[1]["lr"]
            self.aux.step()
        return loss

    def _round(self, x: torch.Tensor) -> torch.Tensor:
        if self.update_rounding == "nearest":
            return torch.round(x)
        low = torch.floor(x)
        return low + (torch.rand(x.shape, generator=self.generator) < (x - low)).to(x.dtype)

    def _lns_madam(self, layer: nn.Module, grad: torch.Tensor, state: dict[str, Any], lr: float) -> None:
        """LNS-Madam on the codes: log2|w| -= lr * round(g^) * sign(w), i.e. k -= lr * gamma * round(g^) * sign(w).

        The clamp at ``w_max = p_scale * RMS(w_0)`` is the top code (the layer's scale is ``w_max``).
        """
        fmt = layer.storage
        if fmt.kind != "lns":
            raise ValueError("the LNS-Madam update needs an LNS weight format; use method=sgd/adam for fixed/float")
        g_hat = normalized_grad(state, grad.float(), self.g_bound).round_()
        sign = torch.sign(layer.codes).to(torch.float32)
        step = self._round(lr * fmt.gamma * g_hat * sign)
        k = layer.codes.abs().to(torch.float32) - step
        k = torch.where(sign != 0, k.clamp(1, fmt.max_code), torch.zeros_like(k))
        layer.codes.copy_((sign * k).to(torch.int16))

    def _float_update(self, layer: nn.Module, grad: torch.Tensor, state: dict[str, Any], group: dict) -> None:
        """SGD (momentum, weight decay) or Adam computed in float, then re-encoded to the same grid and scale."""
        w = decode(layer.codes, layer.storage, layer.scale)
        g = grad.float() + group["weight_decay"] * w
        if self.method == "sgd":
            buf = state.get("momentum_buffer")
            buf = g.clone() if buf is None else buf.mul_(group["momentum"]).add_(g)
            state["momentum_buffer"] = buf
            w = w - group["lr"] * buf
        else:
            state["step"] = state.get("step", 0) + 1
            m = state.setdefault("exp_avg", torch.zeros_like(g)).mul_(0.9).add_(g, alpha=0.1)
            v = state.setdefault("exp_avg_sq", torch.zeros_like(g)).mul_(0.999).addcmul_(g, g, value=0.001)
            m_hat, v_hat = m / (1 - 0.9 ** state["step"]), v / (1 - 0.999 ** state["step"])
            w = w - group["lr"] * m_hat / (v_hat.sqrt() + 1e-8)
        layer.codes.copy_(encode(w, layer.storage, layer.scale, self.update_rounding, self.generator))
