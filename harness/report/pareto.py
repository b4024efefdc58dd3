"""Direction-aware Pareto fronts of (cost, quality) points.

The cost axis (latency, energy, bytes, FLOPs, BOPs) is always better when lower; the quality axis (the workload's
metric) is better when higher or lower as the workload says (``higher_is_better``). A point is dominated when another
point is at least as good on both axes and strictly better on one.
"""

from __future__ import annotations

from collections.abc import Sequence


def _better_or_equal(a: float, b: float, higher: bool) -> bool:
    return a >= b if higher else a <= b


def dominates(a: tuple[float, float], b: tuple[float, float], higher_is_better: bool) -> bool:
    """True when ``a`` = (cost, quality) dominates ``b``: no worse on both axes, strictly better on one."""
    no_worse = a[0] <= b[0] and _better_or_equal(a[1], b[1], higher_is_better)
    return no_worse and (a[0] < b[0] or a[1] != b[1])


def front_indices(points: Sequence[tuple[float | None, float | None]], higher_is_better: bool) -> list[int]:
    """Indices of the non-dominated points, sorted by increasing cost; points with a missing value are left out."""
    valid = [(i, (float(c), float(q))) for i, (c, q) in enumerate(points) if c is not None and q is not None]
    front = [i for i, p in valid if not any(dominates(o, p, higher_is_better) for j, o in valid if j != i)]
    return sorted(front, key=lambda i: (valid_cost(points, i), -_signed(points, i, higher_is_better)))


def valid_cost(points: Sequence[tuple[float | None, float | None]], index: int) -> float:
    cost = points[index][0]
    return float(cost) if cost is not None else float("inf")


def _signed(points: Sequence[tuple[float | None, float | None]], index: int, higher: bool) -> float:
    quality = points[index][1]
    value = float(quality) if quality is not None else 0.0
    return value if higher else -value


def dominated_mask(points: Sequence[tuple[float | None, float | None]], higher_is_better: bool) -> list[bool]:
    """Per point: True when it is dominated (points with a missing value count as not dominated: not drawn)."""
    front = set(front_indices(points, higher_is_better))
    return [c is not None and q is not None and i not in front for i, (c, q) in enumerate(points)]
