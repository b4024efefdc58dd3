"""Fixed visual encodings shared by every figure and table of the report.

- Colour: per compressor name, from a stable hash of the name into :data:`PALETTE`, so a compressor has the same colour
  in every report whatever else is present.
- Marker shape: how the model ran (:data:`SYMBOLS`): executed (a real low-bit / sparse kernel), simulated (fake-quant,
  savings analytic only), dense kernels, and the dense baseline (a star).
- Marker outline: the most severe measurement-quality flag of the point (:data:`FLAG_OUTLINES`), listed in the hover.
- Opacity: points dominated on that plot's Pareto front are faded.
"""

from __future__ import annotations

import hashlib

PALETTE = (  # Kelly's colours of maximum contrast (no white / black), in a fixed order; never reorder
    "#0067A5",
    "#F6A600",
    "#B3446C",
    "#F38400",
    "#A1CAF1",
    "#C2B280",
    "#DCD300",
    "#E68FAC",
    "#008856",
    "#F99379",
    "#654522",
    "#BE0032",
    "#882D17",
    "#8DB600",
    "#604E97",
    "#E25822",
    "#2B3D26",
    "#F3C300",
    "#848482",
    "#875692",
)
BASELINE_COLOUR = "#111111"
SYMBOLS = {"executed": "circle", "simulated": "diamond", "dense": "square", "baseline": "star"}
SYMBOL_TEXT = {
    "executed": "executed (low-bit / sparse kernel ran)",
    "simulated": "simulated (fake-quant; savings analytic)",
    "dense": "dense kernels",
    "baseline": "dense baseline",
}
FLAG_OUTLINES = (
    ("faster_than_possible", "#d00000"),
    ("unstable", "#ff8c00"),
    ("throttled", "#ff8c00"),
    ("single_process", "#555555"),
    ("below_methodology_minimums", "#555555"),
    ("below_minimums", "#555555"),
)
NO_FLAG_OUTLINE = "#ffffff"
DOMINATED_OPACITY = 0.45
FLAG_DESCRIPTIONS = {
    "faster_than_possible": (
        "measured faster than the model can be (dense kernels, no fewer FLOPs): shown as no difference"
    ),
    "unstable": "latency CV or IQR/median above the methodology threshold",
    "throttled": "GPU clocks throttled during the measurement",
    "single_process": "one process only (report grade needs >= 5)",
    "below_methodology_minimums": "shorter or fewer samples than the methodology minimums (quick profile)",
    "below_minimums": "shorter or fewer samples than the methodology minimums",
}


def compressor_colour(name: str) -> str:
    """The compressor's fixed colour: a stable hash of its name into the palette (not its rank among those shown)."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()
    return PALETTE[int(digest, 16) % len(PALETTE)]


def symbol(execution: str) -> str:
    return SYMBOLS.get(execution, "circle-x")


def flag_outline(flags: list[str]) -> tuple[str, float]:
    """(outline colour, width) for a point: its most severe flag's colour, or a thin white edge when unflagged."""
    present = set(flags)
    for flag, colour in FLAG_OUTLINES:
        if flag in present:
            return colour, 2.5
    return NO_FLAG_OUTLINE, 0.8
