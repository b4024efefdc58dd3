"""Ideal against achieved speedup per backend and batch size (METHODOLOGY §8-9).

Bars are the interleaved ``achieved`` speedups (dense time / compressed time, one process, bootstrap interval as the
error bar, verdict against the A/A spread as the bar text); the ideal FLOPs speedup is a black tick over each
group. Efficiency = achieved / ideal is in the hover. The ratio of two separate measurements is never drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harness.report import style
from harness.report.rows import get

PATTERNS = ("", "/", "x", ".", "\\", "+", "-", "|")
VERDICT_TEXT = {"faster": "faster", "slower": "slower", "no difference": "no diff."}


@dataclass
class Bar:
    """One interleaved comparison: a run's model on one backend at one batch size."""

    label: str
    compressor: str
    backend: str
    batch: str
    point: dict[str, Any]
    efficiency: float | None
    ideal_flops: float | None
    ideal_roofline: float | None
    execution: str | None


@dataclass
class SpeedupData:
    bars: list[Bar] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _label(record: dict[str, Any], model: str) -> str:
    config = record.get("config") or {}
    args = ";".join(f"{k}={v}" for k, v in sorted((config.get("compressor_args") or {}).items()))
    name = config.get("compressor", "?") + (f" [{args}]" if args else "")
    return f"{name} s{config.get('seed')}" + ("" if model == "compressed" else f" ({model})")


def _model_bars(record: dict[str, Any], model: str, table: dict[str, Any], data: SpeedupData, label: str) -> None:
    compressor = str(get(record, "config.compressor"))
    for backend, entry in (table.get("backends") or {}).items():
        if entry.get("status") != "ok":
            data.notes.append(f"{label} on {backend}: {entry.get('status')} ({entry.get('reason')})")
            continue
        for batch, point in (entry.get("achieved") or {}).items():
            if point.get("status", "ok") != "ok" or point.get("ratio") is None:
                data.notes.append(f"{label} on {backend}, bs {batch}: {point.get('status')} ({point.get('reason')})")
                continue
            bar = Bar(
                label=label,
                compressor=compressor,
                backend=backend,
                batch=str(batch),
                point=point,
                efficiency=get(entry, f"efficiency.{batch}"),
                ideal_flops=table.get("ideal_flops"),
                ideal_roofline=get(entry, f"ideal_roofline.{batch}"),
                execution=table.get("execution") or ("simulated" if "quant" in model else "dense"),
            )
            data.bars.append(bar)


def speedup_data(records: list[dict[str, Any]]) -> SpeedupData:
    """Every interleaved comparison of the records (compressed first, then variants), with notes for the missing."""
    data = SpeedupData()
    seen: dict[str, int] = {}
    for record in records:
        speedup = record.get("speedup") or {}
        if not speedup:
            data.notes.append(f"{record.get('run_id')}: no speedup table in the record")
        for model in sorted(speedup, key=lambda m: (m != "compressed", m)):
            label = _label(record, model)
            seen[label] = seen.get(label, 0) + 1
            label = label if seen[label] == 1 else f"{label} #{seen[label]}"
            _model_bars(record, model, speedup[model], data, label)
    return data


def _hover(bar: Bar) -> str:
    p = bar.point
    lines = [
        f"<b>{bar.label}</b> on {bar.backend}, batch {bar.batch}",
        f"achieved (interleaved): {p['ratio']:.3f}x [{p.get('low', 0):.3f}, {p.get('high', 0):.3f}]",
        f"verdict: {p.get('verdict')} (A/A spread {p.get('aa_spread') or 0:.3f})",
    ]
    if p.get("measured_verdict"):
        lines.append(f"measured verdict: {p['measured_verdict']} (cannot be faster: shown as {p.get('verdict')})")
    ideal = "n/a" if bar.ideal_flops is None else f"{bar.ideal_flops:.3f}x"
    roof = "n/a" if bar.ideal_roofline is None else f"{bar.ideal_roofline:.3f}x"
    eff = "n/a" if bar.efficiency is None else f"{bar.efficiency:.2f}"
    lines += [f"ideal FLOPs: {ideal}; ideal roofline: {roof}", f"efficiency (achieved / ideal FLOPs): {eff}"]
    lines.append(f"execution: {bar.execution}; flags: {', '.join(p.get('flags') or []) or 'none'}")
    return "<br>".join(lines)


def _text(bar: Bar) -> str:
    raw = str(bar.point.get("verdict"))
    verdict = VERDICT_TEXT.get(raw, raw)
    return verdict if bar.efficiency is None else f"{verdict}<br>eff {bar.efficiency:.2f}"


def _bar_trace(bars: list[Bar], batch: str, pattern: str, show: bool, width: float) -> go.Bar:
    outlines = [style.flag_outline(b.point.get("flags") or []) for b in bars]
    return go.Bar(
        x=[b.label for b in bars],
        y=[b.point["ratio"] for b in bars],
        name=f"achieved, bs {batch}",
        legendgroup=f"bs{batch}",
        showlegend=show,
        offsetgroup=batch,
        text=[_text(b) for b in bars],
        width=width,
        textposition="inside",
        insidetextanchor="start",
        hovertext=[_hover(b) for b in bars],
        hoverinfo="text",
        error_y={
            "type": "data",
            "symmetric": False,
            "array": [max(b.point.get("high", b.point["ratio"]) - b.point["ratio"], 0) for b in bars],
            "arrayminus": [max(b.point["ratio"] - b.point.get("low", b.point["ratio"]), 0) for b in bars],
            "color": "#222",
        },
        marker={
            "color": [style.compressor_colour(b.compressor) for b in bars],
            "pattern": {"shape": pattern, "fgcolor": "#fff"},
            "line": {"color": [o[0] for o in outlines], "width": [o[1] for o in outlines]},
        },
    )


def _ideal_trace(bars: list[Bar], show: bool) -> go.Scatter:
    ideal = {b.label: b.ideal_flops for b in bars}
    return go.Scatter(
        x=list(ideal),
        y=list(ideal.values()),
        mode="markers",
        name="ideal (FLOPs)",
        legendgroup="ideal",
        showlegend=show,
        marker={"symbol": "line-ew", "size": 44, "line": {"width": 3, "color": "#000"}},
        hovertemplate="%{x}<br>ideal FLOPs speedup %{y:.3f}x<extra></extra>",
    )


def speedup_figure(workload: str, data: SpeedupData) -> go.Figure | None:
    """One subplot per backend; grouped bars per batch size; None when there is no interleaved comparison."""
    if not data.bars:
        return None
    backends = sorted({b.backend for b in data.bars})
    fig = make_subplots(rows=len(backends), cols=1, subplot_titles=[f"backend: {b}" for b in backends])
    for row, backend in enumerate(backends, start=1):
        on = [b for b in data.bars if b.backend == backend]
        batches = sorted({b.batch for b in on}, key=int)
        width = min(0.8, 0.3 * len({b.label for b in on})) / len(batches)
        for index, batch in enumerate(batches):
            picked = [b for b in on if b.batch == batch]
            trace = _bar_trace(picked, batch, PATTERNS[index % len(PATTERNS)], row == 1, width)
            fig.add_trace(trace, row=row, col=1)
        fig.add_trace(_ideal_trace(on, row == 1), row=row, col=1)
        fig.add_hline(y=1.0, line={"color": "#888", "width": 1, "dash": "dash"}, row=row, col=1)
        fig.update_yaxes(title_text="speedup vs dense (x)", row=row, col=1)
    fig.update_layout(
        title=f"{workload}: ideal vs achieved speedup (interleaved; error bars: bootstrap 95% CI)",
        barmode="group",
        height=max(360, 330 * len(backends)),
        margin={"l": 60, "r": 20, "t": 70, "b": 90},
        hoverlabel={"align": "left"},
    )
    return fig
