"""HTML pages of a run's traces: one page per problem (every call's prompt and response) and an index."""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from paperzoo_cantor.evaluate import RECORDS, read_records

_STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto}pre{white-space:pre-wrap;background:#f6f6f6;"
    "padding:.6em;border-radius:4px}details{margin:.4em 0}.bad{color:#b00}.ok{color:#070}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
)


def _pre(text: Any) -> str:
    return f"<pre>{html.escape(str(text))}</pre>"


def render_item(record: Mapping[str, Any]) -> str:
    """One problem: its status, verdict, the decision.json fields and each call."""
    trace = record.get("trace", {})
    status = record.get("status", "?")
    parts = [
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(str(record['pid']))}</title><style>{_STYLE}</style>",
        f"<h1>Problem {html.escape(str(record['pid']))} ({html.escape(str(record.get('method')))})</h1>",
        f"<p>Status: <b class='{'ok' if status == 'ok' else 'bad'}'>{html.escape(status)}</b></p>",
    ]
    for error in record.get("errors", []):
        parts.append(f"<p class='bad'>{html.escape(error)}</p>")
    parts.append(
        "<h2>Verdict</h2>" + _pre({k: record.get(k) for k in ("extraction", "prediction", "correct")})
    )
    for name in ("query", "decision", "sub-tasks", "sub-answers", "supplementary_information", "response"):
        if trace.get(name):
            value = trace[name]
            if isinstance(value, list):
                value = "\n".join(f"[{i}] {v}" for i, v in enumerate(value))
            parts.append(f"<h2>{html.escape(name)}</h2>{_pre(value)}")
    parts.append("<h2>Calls</h2>")
    for i, step in enumerate(trace.get("steps", [])):
        err = f" <span class='bad'>{html.escape(step['error'])}</span>" if step.get("error") else ""
        parts.append(
            f"<details><summary>#{i} {html.escape(step['role'])} ({step.get('seconds', 0):.2f} s){err}</summary>"
            f"<h3>prompt</h3>{_pre(step['prompt'])}<h3>response</h3>{_pre(step['response'])}</details>"
        )
    return "\n".join(parts)


def write_pages(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Writes ``<out>/<pid>.html`` per record and ``<out>/index.html``; returns the index path."""
    run_dir = Path(run_dir)
    records = read_records(run_dir / RECORDS)
    if not records:
        raise FileNotFoundError(f"no records in {run_dir / RECORDS}")
    out = Path(out) if out else run_dir / "traces"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for pid, record in records.items():
        name = "".join(c if c.isalnum() or c in "-_" else "_" for c in pid) + ".html"
        (out / name).write_text(render_item(record), encoding="utf-8")
        rows.append(
            f"<tr><td><a href='{name}'>{html.escape(pid)}</a></td><td>{html.escape(record['status'])}</td>"
            f"<td>{html.escape(str(record.get('correct')))}</td></tr>"
        )
    index = out / "index.html"
    index.write_text(
        f"<!doctype html><meta charset='utf-8'><title>traces</title><style>{_STYLE}</style><h1>{html.escape(str(run_dir))}</h1>"
        "<table><tr><th>pid</th><th>status</th><th>correct</th></tr>" + "".join(rows) + "</table>",
        encoding="utf-8",
    )
    return index
