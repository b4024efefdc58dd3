"""The A, A', B comparison of METHODOLOGY §9 as the doctor's steps call it.

:func:`harness.speedup.interleaved_comparison` times dense, dense again and compressed in turn in one loop.

A' is a separately prepared copy of the dense model when the harness's comparison takes one (``dense_copy``), so
that the A/A spread sees the same memory-placement effects as A/B.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any


def compare(
    dense: Any, dense_copy: Any, compressed: Any, inputs: Sequence[tuple[Any, ...]], settings: Any, device: str
) -> dict[str, Any]:
    """dense time / compressed time (ratio of medians, bootstrap CI) with the A/A verdict."""
    from harness.speedup import interleaved_comparison

    kwargs = {"dense_copy": dense_copy} if "dense_copy" in inspect.signature(interleaved_comparison).parameters else {}
    return interleaved_comparison(dense, compressed, list(inputs), settings, device, **kwargs)
