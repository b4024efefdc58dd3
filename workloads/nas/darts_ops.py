"""Candidate operations of the DARTS cell space (Liu et al., ICLR'19, arXiv 1806.09055) as used by UNAS.

Layer definitions follow quark0/darts ``cnn/operations.py`` and its UNAS copy NVlabs/unas ``darts/operations.py``
(@cdd19b9); both define the same modules:

- ``ReLUConvBN``: ReLU -> conv (no bias) -> BN; the 1x1 form preprocesses the two cell inputs.
- ``SepConv``: (ReLU -> depthwise kxk -> pointwise 1x1 -> BN) twice, the stride in the first depthwise conv.
- ``DilConv``: ReLU -> depthwise kxk with dilation 2 -> pointwise 1x1 -> BN.
- ``FactorizedReduce``: ReLU, then two 1x1 stride-2 convs (C_out/2 each), the second on the input shifted by one
  pixel, concatenated, then BN. It is ``skip_connect`` at stride 2 and the ``preprocess0`` after a reduction cell.
- pools are 3x3 with padding 1 (average pooling excludes the padding); ``none`` outputs zeros (strided).

Op lists. DARTS searches 8 primitives (``DARTS_PRIMITIVES``: none, max_pool_3x3, avg_pool_3x3, skip_connect,
sep_conv_3x3, sep_conv_5x5, dil_conv_3x3, dil_conv_5x5; quark0/darts ``cnn/genotypes.py``). UNAS differs: its list
(``UNAS_PRIMITIVES``, NVlabs/unas ``darts/genotypes.py`` ``set_primitives``) has **7** ops in the order skip_connect,
sep_conv_3x3, max_pool_3x3, dil_conv_3x3, sep_conv_5x5, avg_pool_3x3, sep_conv_7x7 - no ``none`` (UNAS chooses two
inputs per node instead of pruning edges with ``none``), no ``dil_conv_5x5``, and ``sep_conv_7x7`` added; the ImageNet
search uses the first 5 (``--num_ops 5``). UNAS genotypes store op *indices* into this list, so its order matters.

Differences from the references (documented, not silent): ``none`` builds zeros of the strided shape directly;
``FactorizedReduce`` zero-pads its shifted branch when the input side is odd so the two halves still concatenate (at
the even sizes of the papers it is unchanged).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

DARTS_PRIMITIVES: tuple[str, ...] = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
UNAS_PRIMITIVES: tuple[str, ...] = (
    "skip_connect",
    "sep_conv_3x3",
    "max_pool_3x3",
    "dil_conv_3x3",
    "sep_conv_5x5",
    "avg_pool_3x3",
    "sep_conv_7x7",
)


class Zero(nn.Module):
    """The ``none`` op: zeros with the (strided) shape of the op's output."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class ReLUConvBN(nn.Module):
    """ReLU -> Conv2d(bias=False) -> BatchNorm2d."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class DilConv(nn.Module):
    """ReLU -> depthwise dilated kxk -> pointwise 1x1 -> BN."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, dilation: int, affine: bool = True
    ) -> None:
        super().__init__()
        self.op = nn.Sequential(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class SepConv(nn.Module):
    """Two stacked depthwise-separable convs (the stride in the first), each ReLU -> dw -> pw -> BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True) -> None:
        super().__init__()
        self.op = nn.Sequential(
            *DilConv(c_in, c_in, kernel, stride, padding, 1, affine).op,
            *DilConv(c_in, c_out, kernel, 1, padding, 1, affine).op,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class FactorizedReduce(nn.Module):
    """Halves the resolution with two offset 1x1 stride-2 convs (C_out/2 each), concatenated, then BN."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even output width, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        shifted = x[:, :, 1:, 1:]
        if x.shape[-1] % 2 or x.shape[-2] % 2:  # odd side: pad so both halves have ceil(side / 2) pixels
            shifted = F.pad(shifted, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


OpFactory = Callable[[int, int, bool], nn.Module]

OPS: dict[str, OpFactory] = {
    "none": lambda c, stride, affine: Zero(stride),
    "avg_pool_3x3": lambda c, stride, affine: nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False),
    "max_pool_3x3": lambda c, stride, affine: nn.MaxPool2d(3, stride=stride, padding=1),
    "skip_connect": lambda c, stride, affine: nn.Identity() if stride == 1 else FactorizedReduce(c, c, affine),
    "sep_conv_3x3": lambda c, stride, affine: SepConv(c, c, 3, stride, 1, affine),
    "sep_conv_5x5": lambda c, stride, affine: SepConv(c, c, 5, stride, 2, affine),
    "sep_conv_7x7": lambda c, stride, affine: SepConv(c, c, 7, stride, 3, affine),
    "dil_conv_3x3": lambda c, stride, affine: DilConv(c, c, 3, stride, 2, 2, affine),
    "dil_conv_5x5": lambda c, stride, affine: DilConv(c, c, 5, stride, 4, 2, affine),
}


def make_op(name: str, channels: int, stride: int, affine: bool = True) -> nn.Module:
    """Build op ``name`` on ``channels`` channels (``stride`` 2 in reduction cells on the cell inputs)."""
    if name not in OPS:
        raise ValueError(f"Unknown DARTS op {name!r}. Available: {', '.join(OPS)}")
    return OPS[name](channels, stride, affine)
