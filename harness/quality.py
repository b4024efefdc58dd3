"""Quality flags of a run's accuracy: a model whose accuracy ends at chance level is flagged, never silently ``ok``.

Chance is 100 / classes percent for a classifier's top-1 or accuracy metric (the workload says how many classes it
has). A model within 1.5x of chance learned next to nothing: the run is kept (the number is real) and flagged
``baseline_at_chance`` or ``compressed_at_chance`` so that no table shows it as a result without the warning.
"""

from __future__ import annotations

from typing import Any

CHANCE_FACTOR = 1.5
CLASSIFIER_METRICS = ("top1", "accuracy")


def chance_flags(workload: Any, measured: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``{"chance_percent", "flags"}`` for the measured models (``{"baseline": m, "compressed": m}``)."""
    classes = getattr(workload, "num_classes", None)
    metric = workload.info.metric
    if metric not in CLASSIFIER_METRICS or not isinstance(classes, int) or classes < 2:
        return {"chance_percent": None, "flags": []}
    chance = 100.0 / classes
    flags = [
        f"{name}_at_chance"
        for name, m in measured.items()
        if m.get("accuracy", {}).get(metric) is not None and m["accuracy"][metric] <= CHANCE_FACTOR * chance
    ]
    return {"chance_percent": chance, "flags": flags}
