"""The image priors of DeepInversion (Yin et al., CVPR'20, arXiv 1912.08795, section 3.2-3.3).

- ``BatchNormStatistics``: R_feature (eq. 4), per BN layer l
  ``R_l = ||mu_l(x) - running_mean_l||_2 + ||sigma2_l(x) - running_var_l||_2`` over the layer's *input*, with the
  biased per-channel batch variance and plain (not squared) L2 norms, as NVlabs/DeepInversion ``deepinversion.py``
  ``DeepInversionFeatureHook``. The first BN layer's term is multiplied by ``first_bn_multiplier`` (official ImageNet
  option). Besides ``BatchNorm2d`` (the official hook), ``BatchNorm1d`` layers are covered too, with statistics over
  the batch (and length) dimensions: the same prior for networks whose BN sits on features.
- ``total_variation``: R_TV over 4 directions (horizontal, vertical and both diagonals): the L2 form is the sum of the
  four differences' Frobenius norms, the L1 form the sum of their mean absolute values (``get_image_prior_losses``).
- ``image_l2``: R_l2, the mean over the batch of each image's L2 norm.
- ``competition``: the Adaptive DeepInversion term (eq. 8), ``1 - clamp(JS(p_S, p_T), 0, 1)`` at temperature 3 with P,
  Q and M clamped to [0.01, 0.99]; JS is computed the way the official code computes it,
  ``0.5 KL(M || P) + 0.5 KL(M || Q)`` (``KLDivLoss(log P, M)``, batch mean), which swaps the arguments of the
  textbook definition ``0.5 KL(P || M) + 0.5 KL(Q || M)``. Minimising the term maximises teacher-student disagreement.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
ADI_TEMPERATURE = 3.0
JS_CLAMP = (0.01, 0.99)


def batchnorm_layers(model: nn.Module) -> list[nn.Module]:
    """The BN layers with running statistics that R_feature can use, in module order."""
    return [m for m in model.modules() if isinstance(m, BN_TYPES) and m.running_mean is not None]


def feature_statistics_distance(
    features: torch.Tensor, running_mean: torch.Tensor, running_var: torch.Tensor
) -> torch.Tensor:
    """``||mean - running_mean||_2 + ||biased var - running_var||_2`` over every dimension except channels (dim 1)."""
    channels = features.shape[1]
    flat = features.transpose(0, 1).reshape(channels, -1)
    mean = flat.mean(dim=1)
    var = flat.var(dim=1, unbiased=False)
    return torch.norm(running_mean.to(var.dtype) - mean, 2) + torch.norm(running_var.to(var.dtype) - var, 2)


class BatchNormStatistics:
    """Forward hooks on every BN layer of ``model``; after a forward, :meth:`loss` is the weighted sum of R_l."""

    def __init__(self, model: nn.Module, first_bn_multiplier: float = 1.0) -> None:
        self.layers = batchnorm_layers(model)
        if not self.layers:
            raise ValueError("the model has no BatchNorm layer with running statistics, so R_feature is undefined")
        self.first_bn_multiplier = first_bn_multiplier
        self.values: list[torch.Tensor | None] = [None] * len(self.layers)
        self._handles = [layer.register_forward_hook(self._hook(i)) for i, layer in enumerate(self.layers)]

    def _hook(self, index: int):  # noqa: ANN202 - a forward hook
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            self.values[index] = feature_statistics_distance(inputs[0], module.running_mean, module.running_var)

        return hook

    def per_layer(self) -> list[torch.Tensor]:
        if any(v is None for v in self.values):
            raise RuntimeError("R_feature read before a forward pass reached every BN layer")
        return [v for v in self.values if v is not None]

    def loss(self) -> torch.Tensor:
        values = self.per_layer()
        return self.first_bn_multiplier * values[0] + sum(values[1:], torch.zeros((), device=values[0].device))

    def unscaled(self) -> torch.Tensor:
        """Sum of R_l without the first-layer multiplier (the figure the official logs print)."""
        return torch.stack(self.per_layer()).sum()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def __enter__(self) -> BatchNormStatistics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _differences(x: torch.Tensor) -> Sequence[torch.Tensor]:
    return (
        x[:, :, :, :-1] - x[:, :, :, 1:],
        x[:, :, :-1, :] - x[:, :, 1:, :],
        x[:, :, 1:, :-1] - x[:, :, :-1, 1:],
        x[:, :, :-1, :-1] - x[:, :, 1:, 1:],
    )


def total_variation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(R_TV-L1, R_TV-L2) of a batch [B, C, H, W] over the 4 directions."""
    diffs = _differences(x)
    l1 = torch.stack([d.abs().mean() for d in diffs]).sum()
    l2 = torch.stack([torch.norm(d) for d in diffs]).sum()
    return l1, l2


def image_l2(x: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each image's L2 norm."""
    return torch.norm(x.reshape(x.shape[0], -1), dim=1).mean()


def js_divergence(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = ADI_TEMPERATURE
) -> torch.Tensor:
    """The official JS form (module docstring): ``0.5 KL(M||P) + 0.5 KL(M||Q)`` on clamped softened distributions."""
    p = F.softmax(student_logits / temperature, dim=1)
    q = F.softmax(teacher_logits / temperature, dim=1)
    m = (0.5 * (p + q)).clamp(*JS_CLAMP)
    p, q = p.clamp(*JS_CLAMP), q.clamp(*JS_CLAMP)
    kl_m_p = F.kl_div(torch.log(p), m, reduction="batchmean")
    kl_m_q = F.kl_div(torch.log(q), m, reduction="batchmean")
    return 0.5 * kl_m_p + 0.5 * kl_m_q


def competition(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = ADI_TEMPERATURE
) -> torch.Tensor:
    """ADI's R_compete: ``1 - clamp(JS, 0, 1)`` (small when teacher and student disagree)."""
    return 1.0 - js_divergence(student_logits, teacher_logits, temperature).clamp(0.0, 1.0)
