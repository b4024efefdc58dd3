"""Energy of the compression itself (per phase, per source) and the break-even number of inferences.

Every figure is either measured or shown as "unavailable (reason)": reasons are footnoted once per section so that a
long reason ("no RAPL domains under /sys/class/powercap ...") does not fill every cell. Where some phase energy was
measured, a bar chart of joules per phase is drawn as well.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from harness.report import style
from harness.report.rows import get

SOURCES = ("gpu", "cpu")


class Footnotes:
    """Numbered reasons, each listed once."""

    def __init__(self) -> None:
        self.reasons: list[str] = []

    def ref(self, reason: str) -> str:
        if reason not in self.reasons:
            self.reasons.append(reason)
        return f"<sup>[{self.reasons.index(reason) + 1}]</sup>"

    def html(self) -> str:
        items = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        return f'<ol class="notes">{items}</ol>' if items else ""


def _measured(entry: Any, notes: Footnotes, value_key: str = "energy_j", unit: str = "J") -> str:
    if not isinstance(entry, dict):
        return "not measured"
    if entry.get("status") == "ok" and entry.get(value_key) is not None:
        return f"{entry[value_key]:.4g} {unit}"
    return f"{html.escape(str(entry.get('status', 'unavailable')))} {notes.ref(str(entry.get('reason')))}"


def _run_name(record: dict[str, Any]) -> str:
    config = record.get("config") or {}
    return f"{config.get('compressor')} s{config.get('seed')}"


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3g} s"


def _phases_cell(record: dict[str, Any], totals: list[str], notes: Footnotes) -> str:
    """Each phase's wall time, and its energy where it differs from the whole compression's (measured, or another
    reason)."""
    parts = []
    for phase in record.get("phases") or []:
        energy = phase.get("energy") or {}
        cells = [_measured(energy.get(s), notes) for s in SOURCES]
        text = f"{html.escape(str(phase.get('name')))} {_seconds(phase.get('seconds'))}"
        if cells != totals:
            text += " (" + ", ".join(f"{s.upper()} {c}" for s, c in zip(SOURCES, cells, strict=True)) + ")"
        parts.append(text)
    return "; ".join(parts) or "no phases recorded"


def compression_energy_table(records: list[dict[str, Any]], notes: Footnotes) -> str:
    """Per run: the whole compression's wall time and energy per source, then each phase."""
    head = "<tr><th>run</th><th>wall time</th><th>GPU energy</th><th>CPU energy</th><th>phases</th></tr>"
    rows = []
    for record in records:
        total = record.get("compression_energy") or {}
        totals = [_measured(total.get(s), notes) for s in SOURCES]
        cells = [html.escape(_run_name(record)), _seconds(total.get("seconds")), *totals]
        cells.append(_phases_cell(record, totals, notes))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f'<table class="compact"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _break_even_cell(entry: Any, notes: Footnotes) -> str:
    if not isinstance(entry, dict):
        return "not measured"
    if entry.get("inferences") is not None:
        saved = entry.get("saved_j_per_inference")
        extra = f" (saves {saved:.3g} J / inference)" if saved is not None else ""
        return f"{entry['inferences']:,.0f} inferences{extra}"
    return f"unavailable {notes.ref(str(entry.get('reason')))}"


def break_even_table(records: list[dict[str, Any]], notes: Footnotes) -> str:
    """Break-even inferences per run, backend and source (compression energy / energy saved per inference)."""
    head = "<tr><th>run</th><th>backend</th><th>GPU break-even</th><th>CPU break-even</th></tr>"
    rows = []
    for record in records:
        for backend, per_source in (record.get("break_even") or {}).items():
            cells = [_break_even_cell((per_source or {}).get(s), notes) for s in SOURCES]
            tds = "".join(f"<td>{c}</td>" for c in [html.escape(_run_name(record)), html.escape(backend), *cells])
            rows.append(f"<tr>{tds}</tr>")
    if not rows:
        return "<p>break-even: unavailable (no break-even table in these records)</p>"
    return f'<table class="compact"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _inference_entries(records: list[dict[str, Any]]) -> list[tuple[list[str], dict[str, Any]]]:
    """([run, model, backend], {source: energy entry}) for every model and backend of every run."""
    out = []
    for record in records:
        models = {"baseline": record.get("baseline"), "compressed": record.get("compressed")}
        models.update(record.get("variants") or {})
        for model, measured in models.items():
            for backend, entry in (get(measured, "backends") or {}).items():
                out.append(([_run_name(record), model, backend], get(entry, "energy.single_stream") or {}))
    return out


def inference_energy_section(records: list[dict[str, Any]], notes: Footnotes) -> str:
    """SingleStream (batch 1) energy per inference of every model, per backend and source, in a collapsible table
    whose summary says how much was measured (the reasons for the rest are footnoted)."""
    head = "<tr><th>run</th><th>model</th><th>backend</th><th>GPU mJ / inference</th><th>CPU mJ / inference</th></tr>"
    rows, measured, missing = [], 0, 0
    for names, sources in _inference_entries(records):
        cells = [_measured(sources.get(s), notes, "mj_per_inference", "mJ") for s in SOURCES]
        ok = sum(get(sources, f"{s}.status") == "ok" for s in SOURCES)
        measured, missing = measured + ok, missing + len(SOURCES) - ok
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in [*map(html.escape, names), *cells]) + "</tr>")
    table = f'<table class="compact"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'
    summary = f"Inference energy (bs 1): {measured} measured, {missing} unavailable (reasons in the notes below)"
    return f"<details><summary>{summary}</summary>{table}</details>"


def phase_energy_figure(workload: str, records: list[dict[str, Any]]) -> go.Figure | None:
    """Joules per compression phase and source, grouped by run; None when no phase energy was measured."""
    fig = go.Figure()
    for record in records:
        compressor = str(get(record, "config.compressor"))
        for index, source in enumerate(SOURCES):
            phases = [p for p in record.get("phases") or [] if get(p, f"energy.{source}.status") == "ok"]
            if not phases:
                continue
            fig.add_trace(
                go.Bar(
                    x=[p.get("name") for p in phases],
                    y=[get(p, f"energy.{source}.energy_j") for p in phases],
                    name=f"{_run_name(record)} ({source})",
                    marker={"color": style.compressor_colour(compressor), "pattern": {"shape": ("", "/")[index]}},
                    hovertemplate="%{x}: %{y:.4g} J<extra>" + html.escape(_run_name(record)) + f" {source}</extra>",
                )
            )
    if not fig.data:
        return None
    fig.update_layout(
        title=f"{workload}: compression energy per phase", barmode="group", height=360, yaxis_title="energy (J)"
    )
    return fig
