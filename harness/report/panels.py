"""The report's single extension point: panel functions registered per compressor kind.

A panel function has the signature :data:`PanelFn`::

    def my_panel(records: list[dict], ctx: PanelContext) -> Section | None

It receives the ok records of one workload whose ``compressor.kind`` matches the kind it was registered for (every
kind for :data:`ALL_KINDS`) and returns a :class:`Section` (a title and blocks: plotly figures or trusted HTML
strings) or None when it has nothing to show. ``ctx.records`` holds every ok record of the workload, for comparisons
against other kinds (e.g. the dense baseline). Register with the decorator::

    @register_panel("continual", "task matrix")
    def task_matrix(records, ctx): ...

Registered beyond the generic panels: "multitask" (task matrix, harness/report/continual.py), data-free runs of any
kind (synthesized images, harness/report/data_free.py). The report renders,
for each workload, every registered panel in registration order; nothing in :mod:`harness.report.html` is specific
to a kind.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import plotly.graph_objects as go

from harness.report import energy
from harness.report.figures import tradeoff_figure
from harness.report.points import aggregate, metric_label, record_points
from harness.report.rows import get, higher_is_better
from harness.report.speedup_figure import speedup_data, speedup_figure

ALL_KINDS = "*"
Block: TypeAlias = go.Figure | str


@dataclass
class Section:
    """One panel's output: a heading and its blocks (plotly figures, or HTML strings already escaped)."""

    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass(frozen=True)
class PanelContext:
    workload: str
    records: list[dict[str, Any]]


PanelFn = Callable[[list[dict[str, Any]], PanelContext], Section | None]
_REGISTRY: list[tuple[str, str, PanelFn]] = []


def register_panel(kind: str, name: str) -> Callable[[PanelFn], PanelFn]:
    """Decorator: render ``fn`` for the runs whose compressor kind is ``kind`` (or every run for ALL_KINDS)."""

    def wrap(fn: PanelFn) -> PanelFn:
        _REGISTRY[:] = [entry for entry in _REGISTRY if (entry[0], entry[1]) != (kind, name)]
        _REGISTRY.append((kind, name, fn))
        return fn

    return wrap


def registered() -> list[tuple[str, str, PanelFn]]:
    """(kind, name, function) of every registered panel, in rendering order."""
    return list(_REGISTRY)


def record_kind(record: dict[str, Any]) -> str:
    return str(get(record, "compressor.kind") or "unknown")


def workload_sections(workload: str, records: list[dict[str, Any]]) -> list[Section]:
    """Every registered panel's section for one workload's ok records (panels with nothing to show are skipped)."""
    ctx = PanelContext(workload=workload, records=records)
    sections = []
    for kind, _name, fn in registered():
        selected = records if kind == ALL_KINDS else [r for r in records if record_kind(r) == kind]
        if selected:
            section = fn(selected, ctx)
            if section is not None:
                sections.append(section)
    return sections


def _note_list(notes: list[str]) -> str:
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    return f'<ul class="notes">{items}</ul>' if items else ""


@register_panel(ALL_KINDS, "trade-off")
def tradeoff_panel(records: list[dict[str, Any]], ctx: PanelContext) -> Section | None:
    """Metric against latency, energy, size, FLOPs and BOPs with Pareto fronts and the dense baseline."""
    points = [p for record in records for p in record_points(record)]
    if not points:
        return None
    fig = tradeoff_figure(ctx.workload, aggregate(points), metric_label(records[0]), higher_is_better(records[0]))
    return Section("Quality against cost", [fig])


@register_panel(ALL_KINDS, "speedup")
def speedup_panel(records: list[dict[str, Any]], ctx: PanelContext) -> Section | None:
    """Ideal vs achieved (interleaved) speedup per backend and batch size, efficiency in the hover."""
    data = speedup_data([r for r in records if r.get("speedup")])
    fig = speedup_figure(ctx.workload, data)
    if fig is None and not data.notes:
        return None
    blocks: list[Block] = [fig] if fig is not None else []
    if data.notes:
        blocks.append("<p>Not compared:</p>" + _note_list(data.notes))
    return Section("Speedup: ideal vs achieved", blocks)


@register_panel(ALL_KINDS, "energy")
def energy_panel(records: list[dict[str, Any]], ctx: PanelContext) -> Section | None:
    """Compression energy per phase, break-even inferences and inference energy, each measured or with its reason."""
    notes = energy.Footnotes()
    blocks: list[Block] = ["<h4>Compression energy</h4>" + energy.compression_energy_table(records, notes)]
    figure = energy.phase_energy_figure(ctx.workload, records)
    if figure is not None:
        blocks.append(figure)
    blocks.append("<h4>Break-even (inferences until the compression energy is paid back)</h4>")
    blocks.append(energy.break_even_table(records, notes))
    blocks.append(energy.inference_energy_section(records, notes))
    blocks.append(notes.html())
    return Section("Energy", blocks)


from harness.report import continual as _continual  # noqa: E402, F401  (registers the continual panel)
from harness.report import data_free as _data_free  # noqa: E402, F401  (registers the data-free panel)
