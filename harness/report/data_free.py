"""Report panel for data-free runs: the synthesized images, the synthesis loss curves and the accuracy controls.

Shown for every record that synthesized its training data: the ``deepinversion`` compressor (its summary) and any
compressor run with ``--train-data deepinversion`` (the record's ``train_data``). The images come from the record
itself (a PNG data URI of the first 16), so the report stays one self-contained file.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from harness.report import style
from harness.report.panels import ALL_KINDS, Block, PanelContext, Section, register_panel
from harness.report.rows import get

ACCURACY_ROWS = (
    ("teacher", "teacher (inverted, real validation data)"),
    ("real_data_student", "student trained on the real data"),
    ("data_free_student", "data-free student (synthesized images only)"),
    ("noise_student", "student distilled from N(0,1) noise (control)"),
)
CURVES = ("r_feature", "ce", "tv_l2", "competition")


def synthesis_of(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(synthesis summary, the summary holding the image grid) of a data-free record, or None."""
    summary = get(record, "compressor.summary") or {}
    if isinstance(summary.get("synthesis"), dict):
        return summary["synthesis"], summary
    train_data = record.get("train_data")
    if isinstance(train_data, dict) and train_data.get("source") == "deepinversion":
        return train_data, train_data
    return None


def _label(record: dict[str, Any]) -> str:
    method = get(record, "compressor.summary.method")
    name = get(record, "compressor.name") or "?"
    return f"{name} ({method})" if method else f"{name} on synthesized data"


def accuracy_table(record: dict[str, Any], metric: str) -> str:
    summary = get(record, "compressor.summary") or {}
    rows = [
        f"<tr><td>{html.escape(text)}</td><td>{summary[key][metric]:.2f}</td></tr>"
        for key, text in ACCURACY_ROWS
        if isinstance(summary.get(key), dict) and metric in summary[key]
    ]
    if not rows:
        return ""
    return f"<table><tr><th>model</th><th>{html.escape(metric)}</th></tr>{''.join(rows)}</table>"


def curves_figure(record: dict[str, Any], synthesis: dict[str, Any]) -> go.Figure | None:
    """Loss terms over the iterations of the first synthesized batch (log scale)."""
    curves = synthesis.get("loss_curves") or []
    history = curves[0] if curves else []
    if not history:
        return None
    fig = go.Figure()
    x = [row["iteration"] for row in history]
    colours = list(style.PALETTE)
    for term in CURVES:
        if all(term in row for row in history):
            values = [row[term] for row in history]
            fig.add_trace(go.Scatter(x=x, y=values, mode="lines+markers", name=term, line={"color": colours.pop(0)}))
    fig.update_layout(
        title=f"{_label(record)}: synthesis loss terms, batch 1", xaxis_title="iteration", yaxis_type="log", height=320
    )
    return fig


@register_panel(ALL_KINDS, "synthesized images")
def data_free_panel(records: list[dict[str, Any]], ctx: PanelContext) -> Section | None:
    blocks: list[Block] = []
    for record in records:
        found = synthesis_of(record)
        if found is None:
            continue
        synthesis, holder = found
        grid = holder.get("images_grid") or {}
        metric = get(record, "workload.metric") or "top1"
        head = (
            f"<h4>{html.escape(_label(record))} · run {html.escape(str(record.get('run_id')))}</h4>"
            f"<p>{synthesis.get('images')} images, {synthesis.get('iterations_per_batch')} iterations per batch, "
            f"R_feature reduced {synthesis.get('r_feature_reduction_median', float('nan')):.1f}x (median), teacher "
            f"agrees with the target on {100 * synthesis.get('teacher_target_agreement', float('nan')):.1f} %, "
            f"{synthesis.get('seconds', float('nan')):.0f} s.</p>"
        )
        image = grid.get("data_uri", "") if isinstance(grid, dict) else ""
        if image.startswith("data:image/png;base64,"):
            style_attr = "image-rendering:pixelated;width:256px"
            head += f'<img alt="synthesized images" src="{html.escape(image)}" style="{style_attr}">'
        blocks.append(head + accuracy_table(record, metric))
        figure = curves_figure(record, synthesis)
        if figure is not None:
            blocks.append(figure)
    return Section("Data-free: synthesized images", blocks) if blocks else None
