"""Self-contained plotly HTML report (works offline: plotly.js is inlined once).

Per workload: accuracy vs latency and accuracy vs size scatter plots (one point per run; hover shows the config),
then a sortable table of all runs (click a column header), and a list of records that could not be read.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import plotly.colors
import plotly.graph_objects as go
from plotly.io import to_html
from plotly.subplots import make_subplots

from harness.report.rows import flatten
from harness.store import LoadResult, atomic_write_text

SORT_SCRIPT = """
<script>
document.querySelectorAll('table.runs th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var asc = th.dataset.asc !== 'true'; th.dataset.asc = asc;
    var rows = Array.from(body.rows).sort(function (a, b) {
      var x = a.cells[col].innerText, y = b.cells[col].innerText;
      var nx = parseFloat(x), ny = parseFloat(y);
      var cmp = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? cmp : -cmp;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script>
"""
TABLE_COLUMNS = (
    "run_id",
    "workload",
    "dataset",
    "compressor",
    "compressor_args",
    "status",
    "execution",
    "baseline.accuracy",
    "compressed.accuracy",
    "baseline.latency_p50_ms",
    "compressed.latency_p50_ms",
    "compressed.throughput",
    "compressed.params",
    "compressed.flops",
    "compressed.size_bytes",
    "speedup.ideal_flops",
    "speedup.achieved_bs1",
)


def _hover(row: dict[str, Any]) -> str:
    keys = ("run_id", "compressor", "compressor_args", "dataset", "profile", "seed", "device", "execution")
    return "<br>".join(f"{k}: {row.get(k)}" for k in keys)


def workload_figure(workload: str, rows: list[dict[str, Any]]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("accuracy vs latency (bs 1, p50)", "accuracy vs size"))
    palette = plotly.colors.qualitative.Plotly
    for index, compressor in enumerate(sorted({r["compressor"] for r in rows})):
        group = [r for r in rows if r["compressor"] == compressor]
        hover = [_hover(r) for r in group]
        common = {
            "mode": "markers",
            "name": compressor,
            "hovertext": hover,
            "hoverinfo": "text+x+y",
            "legendgroup": compressor,
            "marker": {"size": 10, "color": palette[index % len(palette)]},
        }
        fig.add_trace(
            go.Scatter(
                x=[r["compressed.latency_p50_ms"] for r in group], y=[r["compressed.accuracy"] for r in group], **common
            ),
            row=1,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=[r["compressed.size_bytes"] for r in group],
                y=[r["compressed.accuracy"] for r in group],
                showlegend=False,
                **common,
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(title_text="latency p50 (ms)", row=1, col=1)
    fig.update_xaxes(title_text="state_dict bytes", type="log", row=1, col=2)
    fig.update_yaxes(title_text="metric")
    fig.update_layout(title=f"Workload {workload}", height=450)
    return fig


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def runs_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in TABLE_COLUMNS) + "</tr>" for r in rows
    )
    return f'<table class="runs"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def build_report(loaded: LoadResult, out: str | Path, title: str = "Compression benchmark report") -> Path:
    rows = [flatten(r) for r in loaded.records]
    ok_rows = [r for r in rows if r["status"] == "ok"]
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{len(rows)} runs ({len(ok_rows)} ok)</p>"]
    include_js: Any = True
    for workload in sorted({r["workload"] for r in ok_rows if r["workload"]}):
        fig = workload_figure(workload, [r for r in ok_rows if r["workload"] == workload])
        parts.append(to_html(fig, full_html=False, include_plotlyjs=include_js))
        include_js = False
    parts.append("<h2>Runs</h2>" + runs_table(rows))
    if loaded.errors:
        items = "".join(f"<li>{html.escape(e)}</li>" for e in loaded.errors)
        parts.append(f"<h2>Unreadable records (skipped)</h2><ul>{items}</ul>")
    style = (
        "<style>body{font-family:sans-serif;margin:2em} table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:3px 6px} th{cursor:pointer;background:#eee}</style>"
    )
    document = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{style}</head>"
    document += f"<body>{''.join(parts)}{SORT_SCRIPT}</body></html>"
    out = Path(out)
    atomic_write_text(out, document)
    return out
