"""`edgedeploy report merge`: many devices' report.json files as one table — device × precision, with accuracy,
latency and pass/fail — in Markdown (a CI step summary) and self-contained HTML.

A row's device is what the report says it ran on (edgedeploy.device: the Jetson model or the CPU, with the target
backend); its run is the name of the folder holding report.json, which the fleet workflow names DEVICE-PRECISION.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from edgedeploy import device as device_conditions
from edgedeploy import fileio
from edgedeploy.errors import UsageError
from edgedeploy.tasks import task_of

_PRECISIONS = ("fp32", "fp16", "int8")


def load_reports(paths: list[Path]) -> list[dict[str, Any]]:
    """Each report.json with the fields the table needs; an unreadable or foreign file is a UsageError naming it."""
    rows = []
    for path in paths:
        try:
            report = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise UsageError("report not found", where=str(path)) from None
        except (OSError, ValueError) as e:
            raise UsageError(f"not a readable JSON report ({e})", where=str(path)) from None
        if not isinstance(report, dict) or not str(report.get("schema", "")).startswith("edgedeploy.report/"):
            raise UsageError("not an edgedeploy report.json", where=str(path),
                             fix="pass the report.json files that edgedeploy build or validate wrote")
        rows.append(_row(Path(path), report))
    if not rows:
        raise UsageError("no reports given", fix="pass report.json files, e.g. out/*/report.json")
    return sorted(rows, key=lambda r: (r["device"], r["target"], _order(r["precision"]), r["run"]))


def _order(precision: str) -> int:
    return _PRECISIONS.index(precision) if precision in _PRECISIONS else len(_PRECISIONS)


def _row(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    conditions = report.get("conditions", {})
    dev = report.get("device")
    model = (dev or {}).get("model") or conditions.get("processor") or "unknown device"
    latency = {t["batch"]: t for t in report.get("latency", [])}
    first = latency[min(latency)] if latency else None
    task = report.get("task") or {}
    failed = [c["name"] for c in report.get("checks", []) if c.get("status", "pass" if c.get("passed") else "fail")
              == "fail"]
    return {
        "run": path.parent.name, "path": str(path), "kind": report.get("kind"), "name": report.get("name"),
        "device": f"{model} · {report.get('target')}", "conditions": device_conditions.summary(dev),
        "target": report.get("target"), "precision": report.get("precision"),
        "backend": f"{conditions.get('backend', report.get('target'))} {conditions.get('version', '')}".strip(),
        "accuracy": _accuracy(task),
        "rel_l2": max((m["rel_l2"] for m in report.get("tensors", {}).values()), default=None),
        "latency_batch": first["batch"] if first else None,
        "median_ms": first["median_ms"] if first else None,
        "p99_ms": first["p99_ms"] if first else None,
        "unstable": bool(first and first.get("unstable")),
        "passed": bool(report.get("passed")), "failed_checks": failed,
    }


def _accuracy(task: dict[str, Any]) -> str:
    """The task's headline metric (edgedeploy.tasks: its summary_metrics) with its drop when known."""
    kind = task_of(task)
    found = kind.summary(task) if kind is not None else None
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


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


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


__all__ = ["merge", "load_reports", "render_markdown", "render_html"]
