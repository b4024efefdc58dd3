"""The A, A', B comparison of METHODOLOGY §9 as the doctor's steps call it.

:func:`harness.speedup.interleaved_comparison` times dense, a copy of dense and compressed in turn in one loop.

A' is a separately prepared copy of the dense model (``dense_copy``), so that the A/A spread sees the same
memory-placement effects as A/B.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def compare(
    dense: Any, dense_copy: Any, compressed: Any, inputs: Sequence[tuple[Any, ...]], settings: Any, device: str
) -> dict[str, Any]:
    """dense time / compressed time (ratio of medians, bootstrap CI) with the A/A verdict."""
    from harness.speedup import interleaved_comparison

    return interleaved_comparison(dense, compressed, list(inputs), settings, device, dense_copy=dense_copy)
