"""The runs table: one row per run x model (compressed, variants) x backend at batch 1, one row per failed run.

Columns are grouped (run, quality, latency, speedup, ...); a column chooser shows or hides each group, the table
scrolls horizontally with the run column kept in view, headers sort on click (numbers numerically) and selects filter
by workload, compressor and dataset. All of it is plain inline JS (:data:`TABLE_SCRIPT`): the report works offline.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

from harness.report import style
from harness.report.points import P90_MIN_SAMPLES, model_bops, model_execution
from harness.report.rows import flatten, get, long_rows, metric_value


@dataclass(frozen=True)
class Column:
    """A table column: sorted by ``key``'s value, showing ``text``'s value where given (e.g. a value with its CI)."""

    key: str
    header: str
    group: str
    text: str | None = None


GROUPS = {
    "run": True,
    "quality": True,
    "latency bs 1": True,
    "speedup bs 1 (interleaved)": True,
    "flags": True,
    "context": False,
    "size & compute": False,
    "throughput": False,
    "energy": False,
    "error": False,
}
COLUMNS = (
    Column("run_id", "run (hover: id)", "run"),
    Column("workload", "workload", "run"),
    Column("compressor", "compressor [args]", "run", "compressor_label"),
    Column("seed", "seed", "run"),
    Column("model", "model", "run"),
    Column("execution", "execution", "run"),
    Column("metric_value", "metric", "quality", "metric_text"),
    Column("dense_metric", "dense", "quality"),
    Column("metric_ratio", "÷ dense", "quality"),
    Column("latency_p90_ms", "p90 ms [95% CI]", "latency bs 1", "latency_p90_text"),
    Column("ideal_speedup_flops", "ideal (FLOPs)", "speedup bs 1 (interleaved)"),
    Column("speedup", "achieved [95% CI]", "speedup bs 1 (interleaved)", "speedup_text"),
    Column("speedup_verdict", "verdict", "speedup bs 1 (interleaved)"),
    Column("efficiency", "efficiency", "speedup bs 1 (interleaved)"),
    Column("all_flags", "flags (hover: meaning)", "flags"),
    Column("status", "status", "context"),
    Column("dataset", "dataset", "context"),
    Column("backend", "backend", "context"),
    Column("latency_p50_ms", "latency p50 ms", "context"),
    Column("latency_processes", "latency processes", "context"),
    Column("params", "params", "size & compute"),
    Column("size_bytes", "state_dict bytes", "size & compute"),
    Column("theoretical_bytes", "theoretical bytes", "size & compute"),
    Column("flops", "FLOPs", "size & compute"),
    Column("bops", "BOPs", "size & compute"),
    Column("throughput_samples_per_s", "samples/s bs 1", "throughput"),
    Column("best_samples_per_s", "best samples/s", "throughput"),
    Column("energy_mj_per_query", "mJ / query", "energy"),
    Column("energy_status", "energy status", "energy"),
    Column("error", "error", "error"),
)
FILTERS = ("workload", "compressor", "dataset")
FLAG_COLOURS = dict(style.FLAG_OUTLINES)
SHORT_FLAGS = {
    "below_methodology_minimums": "minimums",
    "below_minimums": "minimums",
    "faster_than_possible": "too fast",
    "single_process": "1 process",
}


def _where(model: str) -> str:
    return model if model in ("baseline", "compressed") else f"variants.{model}"


def _enrich(row: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    model = row.get("model") or "compressed"
    dense = metric_value(record, "baseline")
    value = row.get("metric_value")
    flags = {f for f in (row.get("flags") or "").split(";") + (row.get("latency_flags") or "").split(";") if f}
    extra = {
        "seed": get(record, "config.seed"),
        "execution": model_execution(record, model),
        "compressor_label": _compressor_label(row),
        "metric_text": None if value is None else f"{row.get('metric')} {value:.4g}",
        "dense_metric": dense,
        "metric_ratio": value / dense if value is not None and dense else None,
        "latency_p90_text": _with_interval(row, "latency_p90_ms", "latency_p90_low_ms", "latency_p90_high_ms")
        or _no_p90(record, model, row.get("backend")),
        "speedup_text": _with_interval(row, "speedup", "speedup_low", "speedup_high"),
        "all_flags": sorted(flags),
        "bops": model_bops(get(record, _where(model)) or {}),
        "best_samples_per_s": get(record, f"{_where(model)}.backends.{row.get('backend')}.offline.best_samples_per_s"),
    }
    return {**row, **extra}


def _with_interval(row: dict[str, Any], key: str, low: str, high: str) -> str | None:
    value, lo, hi = row.get(key), row.get(low), row.get(high)
    if value is None:
        return None
    return f"{value:.4g}" + ("" if lo is None or hi is None else f" [{lo:.3g}, {hi:.3g}]")


def _no_p90(record: dict[str, Any], model: str, backend: Any) -> str | None:
    """'n/a (n=24 < 64)' where the methodology does not publish a p90 for so few samples."""
    n = get(record, f"{_where(model)}.backends.{backend}.single_stream.host_latency.n")
    return None if n is None or n >= P90_MIN_SAMPLES else f"n/a (n={n} < {P90_MIN_SAMPLES})"


def _compressor_label(row: dict[str, Any]) -> str | None:
    name, args = row.get("compressor"), row.get("compressor_args")
    return None if name is None else f"{name} [{args}]" if args else str(name)


def table_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The table rows of one record: its compressed and variant models at batch 1 per backend, or the run itself."""
    rows = [
        _enrich(r, record) for r in long_rows(record) if r["model"] != "baseline" and r.get("batch_size") in (1, None)
    ]
    if rows and record.get("status") == "ok":
        return rows
    row = flatten(record)
    row["model"] = None
    row["error"] = " ".join(str(x) for x in (get(record, "error.type"), get(record, "error.message")) if x) or None
    row["all_flags"] = [f for f in (row.get("flags") or "").split(";") if f]
    row["compressor_label"] = _compressor_label(row)
    return [row]


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 1e5 else str(value)
    return str(value)


def _cell(column: Column, row: dict[str, Any]) -> str:
    value = row.get(column.key)
    attrs = f' data-group="{html.escape(column.group)}"'
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        attrs += f' data-v="{value!r}"'
    if column.key == "all_flags":
        badges = "".join(
            f'<span class="flag" style="border-color:{FLAG_COLOURS.get(f, "#555")}" '
            f'title="{html.escape(f + ": " + style.FLAG_DESCRIPTIONS.get(f, f))}">'
            f"{html.escape(SHORT_FLAGS.get(f, f))}</span>"
            for f in value or []
        )
        return f"<td{attrs}>{badges}</td>"
    text = _fmt(row.get(column.text) if column.text else value)
    if column.key == "run_id" and "-" in text:
        return f'<td{attrs} title="{html.escape(text)}">{html.escape(text.rsplit("-", 1)[-1])}</td>'
    if column.key in ("compressor", "error", "energy_status") and len(text) > 24:
        return f'<td{attrs} title="{html.escape(text)}">{html.escape(text[:22])}…</td>'
    css = f' class="v-{html.escape(text.replace(" ", "-"))}"' if column.key == "speedup_verdict" and text else ""
    return f"<td{attrs}{css}>{html.escape(text)}</td>"


def _row_html(row: dict[str, Any]) -> str:
    data = "".join(f' data-{k}="{html.escape(str(row.get(k) or ""))}"' for k in FILTERS)
    status = html.escape(str(row.get("status")))
    return f'<tr class="status-{status}"{data}>' + "".join(_cell(c, row) for c in COLUMNS) + "</tr>"


def _controls(rows: list[dict[str, Any]]) -> str:
    parts = []
    for key in FILTERS:
        values = sorted({str(r.get(key)) for r in rows if r.get(key) is not None})
        options = "".join(f'<option value="{html.escape(v)}">{html.escape(v)}</option>' for v in values)
        parts.append(
            f'<label>{key} <select data-filter="{key}"><option value="">all</option>{options}</select></label>'
        )
    parts.append('<label>search <input type="search" data-filter="text" placeholder="any text"></label>')
    boxes = "".join(
        f'<label><input type="checkbox" data-toggle-group="{html.escape(g)}"{" checked" if shown else ""}>'
        f"{html.escape(g)}</label>"
        for g, shown in GROUPS.items()
    )
    return f'<div class="controls">{"".join(parts)}</div><div class="controls">columns: {boxes}</div>'


def runs_table(records: list[dict[str, Any]]) -> str:
    """The whole table block: filters, column chooser, grouped headers and rows."""
    rows = [row for record in records for row in table_rows(record)]
    groups = "".join(
        f'<th colspan="{sum(c.group == g for c in COLUMNS)}" data-group="{html.escape(g)}">{html.escape(g)}</th>'
        for g in GROUPS
    )
    heads = "".join(
        f'<th data-group="{html.escape(c.group)}" class="sort">{html.escape(c.header)}</th>' for c in COLUMNS
    )
    body = "".join(_row_html(r) for r in rows)
    table = (
        f'<div class="table-wrap"><table class="runs"><thead><tr class="groups">{groups}</tr><tr>{heads}</tr>'
        f"</thead><tbody>{body}</tbody></table></div>"
    )
    return (
        _controls(rows) + f'<p class="count"><span id="shown-rows">{len(rows)}</span> of {len(rows)} rows</p>' + table
    )


TABLE_SCRIPT = """
<script>
(function () {
  var table = document.querySelector('table.runs');
  if (!table) { return; }
  var body = table.tBodies[0];
  function cellValue(cell) {
    return cell.dataset.v !== undefined ? parseFloat(cell.dataset.v) : cell.innerText.trim();
  }
  table.querySelectorAll('thead tr:last-child th.sort').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.dataset.asc !== 'true';
      table.querySelectorAll('th.sort').forEach(function (h) { delete h.dataset.asc; });
      th.dataset.asc = asc;
      var rows = Array.from(body.rows).sort(function (a, b) {
        var x = cellValue(a.cells[col]), y = cellValue(b.cells[col]);
        if (x === '' || y === '') { return x === '' ? 1 : -1; }
        var cmp = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return asc ? cmp : -cmp;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  var filters = document.querySelectorAll('[data-filter]');
  function applyFilters() {
    var shown = 0;
    Array.from(body.rows).forEach(function (row) {
      var ok = true;
      filters.forEach(function (f) {
        var want = f.value.trim().toLowerCase();
        if (!want) { return; }
        if (f.dataset.filter === 'text') { ok = ok && row.innerText.toLowerCase().indexOf(want) >= 0; }
        else { ok = ok && (row.dataset[f.dataset.filter] || '').toLowerCase() === want; }
      });
      row.style.display = ok ? '' : 'none';
      shown += ok ? 1 : 0;
    });
    document.getElementById('shown-rows').textContent = shown;
  }
  filters.forEach(function (f) {
    f.addEventListener('input', applyFilters);
    f.addEventListener('change', applyFilters);
  });
  function applyGroups() {
    document.querySelectorAll('[data-toggle-group]').forEach(function (box) {
      table.querySelectorAll('[data-group="' + box.dataset.toggleGroup + '"]').forEach(function (el) {
        el.style.display = box.checked ? '' : 'none';
      });
    });
  }
  document.querySelectorAll('[data-toggle-group]').forEach(function (box) {
    box.addEventListener('change', applyGroups);
  });
  applyGroups();
})();
</script>
"""
