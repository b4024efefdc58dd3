"""Report panel for multi-task (continual) runs: the task-by-task accuracy matrix of the method and of plain
fine-tuning, forgetting, storage against one network per task, and the task-switch latency.

Reads the summary that compressors/continual fills for PackNet and Piggyback (``accuracy``, ``zero_forgetting``,
``storage``, ``latency``, ``controls``); a record without an accuracy matrix is left out.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from harness.report.panels import Block, PanelContext, Section, register_panel
from harness.report.rows import get


def _cell(value: Any, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def matrix_figure(title: str, accuracy: dict[str, Any]) -> go.Figure:
    """Heatmap of ``matrix[i][s]`` (task i after task s was added); empty above the diagonal."""
    names = [str(n) for n in accuracy["tasks"]]
    matrix = accuracy["matrix"]
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=[f"after {n}" for n in names],
            y=names,
            text=[[_cell(v) for v in row] for row in matrix],
            texttemplate="%{text}",
            colorscale="Viridis",
            hovertemplate="%{y} %{x}: %{z:.2f}<extra></extra>",
        )
    )
    fig.update_layout(title=title, yaxis_autorange="reversed", height=120 + 40 * len(names))
    return fig


def forgetting_table(summary: dict[str, Any]) -> str:
    """Per task: final metric and forgetting of the method, of plain fine-tuning, and the separate network's metric."""
    accuracy = summary["accuracy"]
    controls = summary.get("controls") or {}
    finetune = controls.get("finetuning") or {}
    separate = {row["task"]: row["metric"] for row in (controls.get("separate_models") or {}).get("tasks", [])}
    zero = {row["task"]: row["bit_identical"] for row in (summary.get("zero_forgetting") or {}).get("tasks", [])}
    bits = (summary.get("storage") or {}).get("mask_bits_per_task") or {}
    head = (
        "<tr><th>task</th><th>final</th><th>forgetting</th><th>logits bit-identical</th><th>mask bits</th>"
        "<th>fine-tuning: final</th><th>fine-tuning: forgetting</th><th>separate network</th></tr>"
    )
    rows = []
    for i, name in enumerate(accuracy["tasks"]):
        ft_final = finetune.get("final", [None] * (i + 1))[i] if finetune else None
        ft_forget = finetune.get("forgetting", [None] * (i + 1))[i] if finetune else None
        cells = [
            html.escape(str(name)),
            _cell(accuracy["final"][i]),
            _cell(accuracy["forgetting"][i]),
            {True: "yes", False: "NO"}.get(zero.get(name), ""),  # type: ignore[arg-type]
            _cell(bits.get(name), 0),
            _cell(ft_final),
            _cell(ft_forget),
            _cell(separate.get(name)),
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def storage_text(summary: dict[str, Any]) -> str:
    storage = summary.get("storage") or {}
    separate = (get(summary, "controls.separate_models") or {}).get("total_bytes") or storage.get(
        "separate_networks_bytes"
    )
    parts = []
    if storage.get("total_bytes"):
        parts.append(f"stored: {storage['total_bytes'] / 1e6:.3f} MB ({storage['shared_bytes'] / 1e6:.3f} MB shared)")
    if separate:
        parts.append(f"one network per task: {separate / 1e6:.3f} MB")
    switch = get(summary, "latency.task_switch.p50_ms")
    if switch is not None:
        parts.append(f"task switch p50 {switch:.3f} ms")
    per_task = get(summary, "latency.per_task") or []
    if per_task:
        parts.append("per-task latency p50 " + ", ".join(f"{r['task']} {r['p50_ms']:.3f} ms" for r in per_task))
    return f"<p>{html.escape('; '.join(parts))}</p>" if parts else ""


@register_panel("multitask", "task matrix")
def continual_panel(records: list[dict[str, Any]], ctx: PanelContext) -> Section | None:
    blocks: list[Block] = []
    for record in records:
        summary = get(record, "compressor.summary") or {}
        if not isinstance(summary.get("accuracy"), dict) or "matrix" not in summary["accuracy"]:
            continue
        name = get(record, "compressor.name") or "?"
        run = html.escape(str(record.get("run_id")))
        blocks.append(f"<h4>{html.escape(name)} · run {run}</h4>" + forgetting_table(summary) + storage_text(summary))
        blocks.append(matrix_figure(f"{name}: metric of each task after each task was added", summary["accuracy"]))
        finetune = get(summary, "controls.finetuning")
        if isinstance(finetune, dict) and "matrix" in finetune:
            blocks.append(matrix_figure(f"plain fine-tuning (control): the forgetting {name} avoids", finetune))
    return Section("Continual: task-by-task accuracy", blocks) if blocks else None
