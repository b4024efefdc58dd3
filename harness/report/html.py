"""Self-contained plotly HTML report (works offline: plotly.js is inlined once, the table's JS is inline).

Layout: a summary and the legend of the encodings, then per workload every registered panel
(:mod:`harness.report.panels`: quality against cost with Pareto fronts, ideal vs achieved speedup, energy, and any
kind-specific panel), then failed / interrupted runs with their error, the runs table
(:mod:`harness.report.table`) and the records that could not be read.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.io import to_html

from harness.report import style
from harness.report.panels import Section, workload_sections
from harness.report.points import INTERVAL
from harness.report.table import TABLE_SCRIPT, runs_table
from harness.store import LoadResult, atomic_write_text

STYLE = """<style>
body{font-family:system-ui,sans-serif;margin:1em 1.5em;color:#222;max-width:1800px}
h2{border-bottom:2px solid #ccc;padding-bottom:2px;margin-top:1.6em} h3{margin:1.2em 0 .3em}
table{border-collapse:collapse;font-size:11px} td,th{border:1px solid #ddd;padding:2px 4px;white-space:nowrap}
th{background:#f0f0f0} th.sort{cursor:pointer} th.sort[data-asc=true]::after{content:" \\25B2"}
th.sort[data-asc=false]::after{content:" \\25BC"} tr.groups th{background:#e2e8f0;text-align:center}
.table-wrap{overflow:auto;max-height:75vh;max-width:100%;border:1px solid #ccc}
.table-wrap thead th{position:sticky;top:0;z-index:2} .table-wrap thead tr:last-child th{top:22px}
.table-wrap td:first-child,.table-wrap th:first-child{position:sticky;left:0;background:#fff;z-index:1}
.table-wrap thead th:first-child{z-index:3;background:#f0f0f0}
.controls{margin:.4em 0;font-size:13px} .controls label{margin-right:1em}
.flag{display:inline-block;border:2px solid #555;border-radius:8px;padding:0 4px;margin:1px;font-size:11px}
.v-faster{color:#06702b;font-weight:bold} .v-slower{color:#a00} .v-no-difference{color:#555}
tr.status-failed td,tr.status-interrupted td{background:#fff1f0} tr.status-running td{background:#fffbe6}
.notes{font-size:12px;color:#555} .key{font-size:13px} .failed li{margin:.3em 0}
table.compact td{white-space:normal;max-width:30em} details summary{cursor:pointer;margin:.4em 0}
</style>"""


def _key() -> str:
    """What the marker shapes, outlines, fading and intervals mean (also in each figure's legend)."""
    shapes = ", ".join(f"{style.SYMBOLS[k]} = {v}" for k, v in style.SYMBOL_TEXT.items())
    flags = "; ".join(f"<b>{html.escape(k)}</b>: {html.escape(v)}" for k, v in style.FLAG_DESCRIPTIONS.items())
    return (
        '<div class="key"><p>Marker shape: ' + html.escape(shapes) + ". Colour: fixed per compressor name. "
        "Faded markers are dominated on that plot's Pareto front (dotted step line; lower cost is better, the metric's "
        "direction is on its axis); the baseline star is never faded, its hover says whether it is dominated. "
        f"Replicate seeds: one point at the mean, interval {INTERVAL}, each seed in the hover."
        " Speedups are interleaved comparisons only (one process; bootstrap 95% CI; 'no difference' inside the "
        "A/A spread).</p><p>Marker outline = measurement-quality flag: " + flags + "</p></div>"
    )


class _Renderer:
    """Renders figures, inlining plotly.js with the first one only."""

    def __init__(self) -> None:
        self.include_js: Any = True

    def block(self, block: go.Figure | str) -> str:
        if isinstance(block, str):
            return block
        out = to_html(block, full_html=False, include_plotlyjs=self.include_js, config={"displaylogo": False})
        self.include_js = False
        return out

    def section(self, section: Section) -> str:
        return f"<h3>{html.escape(section.title)}</h3>" + "".join(self.block(b) for b in section.blocks)


def failures(records: list[dict[str, Any]]) -> str:
    """Failed, interrupted and still-running runs with their error (never dropped silently)."""
    items = []
    for record in records:
        status = record.get("status")
        if status == "ok":
            continue
        config = record.get("config") or {}
        error = record.get("error") or {}
        what = f"{config.get('workload')} / {config.get('compressor')} / seed {config.get('seed')}"
        message = f"{error.get('type', '')}: {error.get('message', '')}" if error else "no error recorded"
        if status == "running" and not error:
            message = "still running, or the process died before writing its end state"
        items.append(
            f"<li><b>{html.escape(str(status))}</b> {html.escape(what)} "
            f"(<code>{html.escape(str(record.get('run_id')))}</code>): {html.escape(message)}</li>"
        )
    return f'<h2>Failed and interrupted runs</h2><ul class="failed">{"".join(items)}</ul>' if items else ""


def _workloads(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by_workload: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        workload = (record.get("config") or {}).get("workload")
        if record.get("status") == "ok" and workload:
            by_workload.setdefault(str(workload), []).append(record)
    return dict(sorted(by_workload.items()))


def render(loaded: LoadResult, title: str = "Compression benchmark report") -> str:
    """The report as one HTML string."""
    records = loaded.records
    by_workload = _workloads(records)
    ok = sum(len(v) for v in by_workload.values())
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts.append(f"<p>{len(records)} runs ({ok} ok, {len(records) - ok} not ok), {len(loaded.errors)} unreadable.</p>")
    parts.append(_key())
    nav = " · ".join(f'<a href="#wl-{html.escape(w)}">{html.escape(w)}</a>' for w in by_workload)
    parts.append(f"<p>Workloads: {nav} · <a href='#runs'>runs table</a></p>")
    renderer = _Renderer()
    for workload, group in by_workload.items():
        parts.append(f'<h2 id="wl-{html.escape(workload)}">Workload {html.escape(workload)} ({len(group)} runs)</h2>')
        parts.extend(renderer.section(s) for s in workload_sections(workload, group))
    parts.append(failures(records))
    parts.append('<h2 id="runs">Runs</h2>' + runs_table(records))
    if loaded.errors:
        items = "".join(f"<li>{html.escape(e)}</li>" for e in loaded.errors)
        parts.append(f"<h2>Unreadable records (skipped)</h2><ul>{items}</ul>")
    head = f"<head><meta charset='utf-8'><title>{html.escape(title)}</title>{STYLE}</head>"
    return f"<!DOCTYPE html><html>{head}<body>{''.join(parts)}{TABLE_SCRIPT}</body></html>"


def build_report(loaded: LoadResult, out: str | Path, title: str = "Compression benchmark report") -> Path:
    """Write the report for ``loaded`` to ``out`` (atomically) and return its path."""
    out = Path(out)
    atomic_write_text(out, render(loaded, title))
    return out
