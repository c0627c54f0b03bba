"""`edgedeploy report merge`: many devices' report.json files as one table — device × precision, with accuracy,
latency and pass/fail — in Markdown (a CI step summary) and self-contained HTML.

A row's device is what the report says it ran on (edgedeploy.device: the Jetson model or the CPU, with the target
backend); its run is the name of the folder holding report.json, which the fleet workflow names DEVICE-PRECISION.

The reports come from devices (over `remote`, or as CI artifacts), so they are untrusted: each is read through the
typed Report (edgedeploy.validate.record; a missing field or one of the wrong type, a file that is not JSON or too
deep, or a report of another schema is one UsageError naming the file and the field), and every text cell of fleet.md is escaped for
Markdown as GitHub renders a step summary: no report field can add a line, a heading, an image, a link or HTML.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from edgedeploy import device as device_conditions
from edgedeploy import fileio
from edgedeploy.errors import UsageError
from edgedeploy.tasks import TaskRecord, task_of
from edgedeploy.validate.record import REPORT_SCHEMA, Report, field_path, problem

_PRECISIONS = ("fp32", "fp16", "int8")
_MAX_REPORT_BYTES = 64 << 20


def read_report(path: Path) -> Report:
    """report.json as the typed Report (edgedeploy.validate.record); a missing, unreadable, foreign or malformed
    file is one UsageError naming the file and the field."""
    fix = "pass the report.json files that edgedeploy build or validate wrote"
    raw = fileio.read_input(path, "report", max_bytes=_MAX_REPORT_BYTES, fix=fix)
    try:
        return Report.model_validate_json(raw)
    except ValidationError as e:
        first = e.errors()[0]
        field = field_path(first["loc"])
        if first["type"].startswith("json") or first["type"] == "recursion_loop" or not field:
            raise UsageError(f"not a readable JSON report ({first['msg']})", where=str(path), fix=fix) from None
        if field == "schema":
            found = first.get("input")
            if isinstance(found, str) and found.startswith("edgedeploy.report/"):
                raise UsageError(f"a report of another edgedeploy version ({found[:40]}); this one reads "
                                 f"{REPORT_SCHEMA}", where=str(path),
                                 fix="validate the artifact again with this version (edgedeploy validate)") from None
            raise UsageError(f"not an edgedeploy report.json (`schema` is not {REPORT_SCHEMA})", where=str(path),
                             fix=fix) from None
        raise UsageError(f"not a valid edgedeploy report: {problem(first)}", where=str(path),
                         fix=fix) from None


def load_reports(paths: list[Path]) -> list[dict[str, Any]]:
    """Each report.json with the fields the table needs; an unreadable or foreign file is a UsageError naming it."""
    rows = []
    for path in paths:
        rows.append(_row(Path(path), read_report(Path(path))))
    if not rows:
        raise UsageError("no reports given", fix="pass report.json files, e.g. out/*/report.json")
    return sorted(rows, key=lambda r: (r["device"], r["target"], _order(r["precision"]), r["run"]))


def _order(precision: str) -> int:
    return _PRECISIONS.index(precision) if precision in _PRECISIONS else len(_PRECISIONS)


def _row(path: Path, report: Report) -> dict[str, Any]:
    conditions = report.conditions
    dev = report.device.model_dump(exclude_unset=True) if report.device is not None else None
    model = (dev or {}).get("model") or conditions.get("processor") or "unknown device"
    latency = {t.batch: t for t in report.latency}
    first = latency[min(latency)] if latency else None
    failed = [c.name for c in report.checks if c.outcome == "fail"]
    return {
        "run": path.parent.name, "path": str(path), "kind": report.kind, "name": report.name,
        "device": f"{model} · {report.target}", "conditions": device_conditions.summary(dev),
        "target": report.target, "precision": report.precision,
        "backend": f"{conditions.get('backend') or report.target} {conditions.get('version') or ''}".strip(),
        "accuracy": _accuracy(report.task),
        "rel_l2": max((m.rel_l2 for m in report.tensors.values()), default=None),
        "latency_batch": first.batch if first else None,
        "median_ms": first.median_ms if first else None,
        "p99_ms": first.p99_ms if first else None,
        "unstable": bool(first and first.unstable),
        "passed": report.passed, "failed_checks": failed,
    }


def _accuracy(task: TaskRecord | None) -> str:
    """The task's headline metric (edgedeploy.tasks: its summary_metrics) with its drop when known."""
    kind = task_of(task)
    found = kind.summary(task) if kind is not None and task is not None else None
    if found is None:
        return "—"
    metric, value, drop = found
    return f"{kind.short_labels.get(metric, metric)} {value:.4f}" + (f" (Δ {_delta(drop)})" if drop is not None else "")


def _delta(drop: float) -> str:
    """The change vs the reference (minus the drop), signed, with no "-0.0000" for a change that rounds to zero."""
    return f"{round(-drop, 4) + 0.0:+.4f}"


def _cell(row: dict[str, Any]) -> str:
    latency = f"{row['median_ms']:.2f} ms" if row["median_ms"] is not None else "—"
    return f"{'PASS' if row['passed'] else 'FAIL'} · {row['accuracy']} · {latency}"


def _pivot(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Device × precision: one cell per report (several reports of one pair are joined)."""
    precisions = sorted({r["precision"] for r in rows}, key=_order)
    devices = list(dict.fromkeys(r["device"] for r in rows))
    table = []
    for dev in devices:
        cells = [" / ".join(_cell(r) for r in rows if r["device"] == dev and r["precision"] == p) or "—"
                 for p in precisions]
        table.append([dev, *cells])
    return ["device · target", *precisions], table


_DETAIL = ["run", "device · target", "precision", "backend", "accuracy", "max rel-L2", "median ms (batch)", "p99 ms",
           "result", "conditions"]


def _detail(row: dict[str, Any]) -> list[str]:
    median = "—" if row["median_ms"] is None else (f"{row['median_ms']:.2f} ({row['latency_batch']})"
                                                   + (" unstable" if row["unstable"] else ""))
    result = "PASS" if row["passed"] else "FAIL: " + ", ".join(row["failed_checks"])
    return [row["run"], row["device"], row["precision"], row["backend"], row["accuracy"],
            "—" if row["rel_l2"] is None else f"{row['rel_l2']:.2e}", median,
            "—" if row["p99_ms"] is None else f"{row['p99_ms']:.2f}", result, row["conditions"]]


def render_markdown(rows: list[dict[str, Any]]) -> str:
    passed = sum(r["passed"] for r in rows)
    header, table = _pivot(rows)
    lines = [f"# edgedeploy fleet: {passed} of {len(rows)} runs passed", "",
             "Each cell: result · accuracy vs the reference · median latency at the smallest batch.", "",
             _md_row(header), "|" + "---|" * len(header), *(_md_row(r) for r in table), "", "## Runs", "",
             _md_row(_DETAIL), "|" + "---|" * len(_DETAIL), *(_md_row(_detail(r)) for r in rows), ""]
    return "\n".join(lines)


_MARKDOWN = re.compile(r"[\\`*_{}\[\]<>#!|~&$]|:(?=//)|(?<=www)\.")  # no line start in a cell: no list markers


def md_text(value: Any) -> str:
    """`value` as one line of Markdown text that renders as itself in a GitHub step summary: line breaks and other
    control characters become spaces, and every character Markdown or HTML gives a meaning inside a line (headings,
    emphasis, code, links and images (a `(` after an escaped `]` is text), table cells, HTML tags and entities, math;
    the `:` of `://` and the `.` of `www.`, which GitHub would turn into links) is backslash-escaped."""
    text = "".join(" " if not ch.isprintable() else ch for ch in str(value))
    return _MARKDOWN.sub(lambda m: "\\" + m.group(0), text)


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(md_text(c) for c in cells) + " |"


def render_html(rows: list[dict[str, Any]]) -> str:
    passed = sum(r["passed"] for r in rows)
    header, table = _pivot(rows)

    def tab(head: list[str], body: list[list[str]], status: list[bool]) -> str:
        out = ["<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
        out += [f"<tr class='{'pass' if ok else 'fail'}'>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
                + "</tr>" for row, ok in zip(body, status)]
        return "".join(out) + "</table>"

    return "\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>edgedeploy fleet</title><style>",
        "body{font-family:system-ui,sans-serif;margin:24px}table{border-collapse:collapse;margin:8px 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}th{background:#f3f3f3}"
        ".fail td{color:#b00020}</style></head><body>",
        f"<h1>edgedeploy fleet: {passed} of {len(rows)} runs passed</h1>",
        "<p>Each cell: result · accuracy vs the reference · median latency at the smallest batch.</p>",
        tab(header, table, [all(r["passed"] for r in rows if r["device"] == t[0]) for t in table]),
        "<h2>Runs</h2>", tab(_DETAIL, [_detail(r) for r in rows], [r["passed"] for r in rows]),
        "</body></html>"])


def merge(paths: list[Path], out_dir: Path) -> list[dict[str, Any]]:
    """Write fleet.md, fleet.html and fleet.json (the rows) into `out_dir`; returns the rows."""
    rows = load_reports(paths)
    fileio.write_text(out_dir / "fleet.md", render_markdown(rows))
    fileio.write_text(out_dir / "fleet.html", render_html(rows))
    fileio.write_json(out_dir / "fleet.json", {"schema": "edgedeploy.fleet/1", "runs": rows})
    return rows


__all__ = ["merge", "load_reports", "read_report", "md_text", "render_markdown", "render_html"]
