"""The per-workload trade-off figure: the workload's metric against latency, energy, stored and theoretical size,
FLOPs and BOPs, one subplot each.

Every subplot draws its own direction-aware Pareto front (a step line through the non-dominated points; cost is
better lower, the metric as the workload says) and fades the dominated points. Shapes, colours and outlines follow
:mod:`harness.report.style`; replicate seeds are one point at the mean with a min-max interval
(:data:`harness.report.points.INTERVAL`), their members listed in the hover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harness.report import style
from harness.report.pareto import dominated_mask, front_indices
from harness.report.points import INTERVAL, Aggregate


@dataclass(frozen=True)
class Axis:
    attr: str
    title: str
    label: str
    log: bool = False


AXES = (
    Axis("latency_ms", "latency (bs 1)", "latency: bs 1 host p90 (ms) ↓; bars: p90 95% CI", log=True),
    Axis("energy_mj", "energy per inference (bs 1)", "energy per inference (mJ) ↓", log=True),
    Axis("size_bytes", "stored size", "stored size: state_dict (bytes) ↓", log=True),
    Axis("theoretical_bytes", "theoretical size", "theoretical size (bytes) ↓", log=True),
    Axis("flops", "FLOPs", "FLOPs per sample (dense kernels) ↓", log=True),
    Axis("bops", "BOPs", "BOPs per sample (MACs x w bits x a bits; float = 32x32) ↓", log=True),
)
COLS = 2


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _hover(agg: Aggregate, axis: Axis, metric: str, dominated: bool) -> str:
    first = agg.first
    lines = [f"<b>{first.label}</b>", f"execution: {first.execution}; backend: {first.backend}"]
    lines.append(f"{metric}: {_fmt(agg.mean('metric'))}; {axis.title}: {_fmt(agg.mean(axis.attr))}")
    if len(agg.members) > 1:
        seeds = len({str(p.seed) for p in agg.members})
        lines.append(f"mean of {len(agg.members)} runs ({seeds} seeds); interval: {INTERVAL}")
        lines += [f"  seed {p.seed} ({p.run_id}): {_fmt(p.metric)}, {_fmt(getattr(p, axis.attr))}" for p in agg.members]
    else:
        lines.append(f"run {first.run_id}, seed {first.seed}")
    if axis.attr == "energy_mj" and agg.mean("energy_mj") is None:
        lines.append(f"energy: unavailable ({first.energy_note})")
    if agg.mean(axis.attr) is not None:
        lines.append("dominated on this plot's Pareto front" if dominated else "on this plot's Pareto front")
    flags = agg.flags
    lines.append("flags: " + (", ".join(flags) if flags else "none"))
    return "<br>".join(lines)


def _interval(agg: Aggregate, attr: str) -> tuple[float, float]:
    """(minus, plus) error-bar lengths: min-max across replicates, or the single run's p90 CI for latency."""
    centre = agg.mean(attr)
    if centre is None:
        return 0.0, 0.0
    span = agg.span(attr)
    if span is None and attr == "latency_ms":
        first = agg.first
        if first.latency_low is not None and first.latency_high is not None:
            span = (first.latency_low, first.latency_high)
    if span is None:
        return 0.0, 0.0
    return max(centre - span[0], 0.0), max(span[1] - centre, 0.0)


def _error(aggs: list[Aggregate], attr: str) -> dict[str, Any]:
    bars = [_interval(a, attr) for a in aggs]
    return {
        "type": "data",
        "symmetric": False,
        "array": [b[1] for b in bars],
        "arrayminus": [b[0] for b in bars],
        "thickness": 1.2,
        "width": 3,
        "visible": any(b != (0.0, 0.0) for b in bars),
    }


def _trace(aggs: list[Aggregate], faded: list[bool], axis: Axis, metric: str) -> go.Scatter:
    first = aggs[0].first
    colour = style.BASELINE_COLOUR if first.is_baseline else style.compressor_colour(first.compressor)
    outlines = [style.flag_outline(a.flags) for a in aggs]
    return go.Scatter(
        x=[a.mean(axis.attr) for a in aggs],
        y=[a.mean("metric") for a in aggs],
        mode="markers",
        name="dense baseline" if first.is_baseline else first.compressor,
        legendgroup="baseline" if first.is_baseline else first.compressor,
        showlegend=False,
        hovertext=[_hover(a, axis, metric, f) for a, f in zip(aggs, faded, strict=True)],
        hoverinfo="text",
        error_x=_error(aggs, axis.attr),
        error_y=_error(aggs, "metric"),
        marker={
            "color": colour,
            "size": 18 if first.is_baseline else 12,
            "symbol": [style.symbol(a.first.execution) for a in aggs],
            "opacity": [style.DOMINATED_OPACITY if f and not first.is_baseline else 1.0 for f in faded],
            "line": {"color": [o[0] for o in outlines], "width": [o[1] for o in outlines]},
        },
    )


def _by_compressor(aggs: list[Aggregate]) -> dict[str, list[int]]:
    """Indices of the aggregates per legend group (the baseline first), keeping their order."""
    groups: dict[str, list[int]] = {}
    for index, agg in enumerate(aggs):
        key = "" if agg.first.is_baseline else agg.first.compressor
        groups.setdefault(key, []).append(index)
    return dict(sorted(groups.items()))


def _add_subplot(
    fig: go.Figure, aggs: list[Aggregate], axis: Axis, position: tuple[int, int], ctx: dict[str, Any]
) -> None:
    coords = [(a.mean(axis.attr), a.mean("metric")) for a in aggs]
    higher = ctx["higher_is_better"] is not False
    faded = dominated_mask(coords, higher)
    front = front_indices(coords, higher)
    if front:
        fig.add_trace(
            go.Scatter(
                x=[coords[i][0] for i in front],
                y=[coords[i][1] for i in front],
                mode="lines",
                line={"shape": "hv", "color": "#444", "width": 1.5, "dash": "dot"},
                name="Pareto front",
                legendgroup="pareto",
                showlegend=ctx["first"],
                hoverinfo="skip",
            ),
            row=position[0],
            col=position[1],
        )
    for indices in _by_compressor(aggs).values():
        picked = [aggs[i] for i in indices]
        trace = _trace(picked, [faded[i] for i in indices], axis, ctx["metric"])
        fig.add_trace(trace, row=position[0], col=position[1])
    missing = [a for a, c in zip(aggs, coords, strict=True) if c[0] is None]
    if missing:
        _note_missing(fig, missing, axis, position, everything=len(missing) == len(aggs))


def _reason(agg: Aggregate, axis: Axis) -> str:
    first = agg.first
    if axis.attr == "energy_mj":
        return first.energy_note or "not measured"
    if axis.attr == "latency_ms":
        return first.latency_note or "not measured"
    return "not measured"


def _note_missing(
    fig: go.Figure, missing: list[Aggregate], axis: Axis, position: tuple[int, int], everything: bool
) -> None:
    """A visible 'unavailable (reason)' note for the points a subplot cannot show (e.g. energy not measured)."""
    what = "energy" if axis.attr == "energy_mj" else axis.title
    by_reason: dict[str, list[str]] = {}
    for agg in missing:
        by_reason.setdefault(_reason(agg, axis), []).append(agg.first.label)
    parts = [f"{what}: unavailable ({reason}) for {', '.join(labels)}" for reason, labels in by_reason.items()]
    text = "<br>".join(_wrap(part) for part in parts)
    index = (position[0] - 1) * COLS + position[1]
    suffix = "" if index == 1 else str(index)
    fig.add_annotation(
        text=text,
        xref=f"x{suffix} domain",
        yref=f"y{suffix} domain",
        x=0.5,
        y=0.5 if everything else 0.02,
        yanchor="middle" if everything else "bottom",
        showarrow=False,
        font={"size": 10, "color": "#a00"},
        bgcolor="#fff6f6",
        bordercolor="#a00",
    )


def _wrap(text: str, width: int = 80, limit: int = 480) -> str:
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    words, lines, line = text.split(" "), [], ""
    for word in words:
        if line and len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "<br>".join([*lines, line])


def _legend_entries(fig: go.Figure, aggs: list[Aggregate]) -> None:
    """One clean legend entry per compressor (its fixed colour) and the baseline; clicking one toggles its points."""
    for key in _by_compressor(aggs):
        baseline = key == ""
        marker = {
            "symbol": "star" if baseline else "circle",
            "color": style.BASELINE_COLOUR if baseline else style.compressor_colour(key),
            "size": 14 if baseline else 11,
        }
        name = "dense baseline" if baseline else key
        group = "baseline" if baseline else key
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, legendgroup=group, marker=marker))


def _legend_key(fig: go.Figure) -> None:
    """Legend entries that explain the encodings (shape = execution, outline = flags, faded = dominated)."""
    for execution, text in style.SYMBOL_TEXT.items():
        if execution == "baseline":
            continue
        marker = {"symbol": style.symbol(execution), "color": "#bbb", "size": 11, "line": {"width": 0}}
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"shape: {text}", marker=marker))
    for flag, colour in (
        ("faster_than_possible", "#d00000"),
        ("unstable", "#ff8c00"),
        ("below minimums / single process", "#555555"),
    ):
        marker = {"symbol": "circle", "color": "#fff", "size": 11, "line": {"color": colour, "width": 2.5}}
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"outline: {flag}", marker=marker))
    faded = {"symbol": "circle", "color": "#888", "opacity": style.DOMINATED_OPACITY, "size": 11}
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name="faded: dominated", marker=faded))


def tradeoff_figure(workload: str, aggs: list[Aggregate], metric: str, higher_is_better: bool | None) -> go.Figure:
    """Metric against every cost axis of :data:`AXES` for the aggregated points of one workload."""
    rows = (len(AXES) + COLS - 1) // COLS
    fig = make_subplots(
        rows=rows, cols=COLS, subplot_titles=[a.title for a in AXES], horizontal_spacing=0.1, vertical_spacing=0.11
    )
    for index, axis in enumerate(AXES):
        position = (index // COLS + 1, index % COLS + 1)
        ctx = {"metric": metric, "higher_is_better": higher_is_better, "first": index == 0}
        _add_subplot(fig, aggs, axis, position, ctx)
        fig.update_xaxes(title_text=axis.label, type="log" if axis.log else "linear", row=position[0], col=position[1])
        fig.update_yaxes(title_text=metric, row=position[0], col=position[1])
    _legend_entries(fig, aggs)
    _legend_key(fig)
    fig.update_layout(
        title=f"{workload}: {metric} against cost (replicates: mean, interval {INTERVAL})",
        height=380 * rows,
        margin={"l": 60, "r": 20, "t": 80, "b": 50},
        legend={"font": {"size": 11}},
        hoverlabel={"align": "left"},
    )
    return fig
