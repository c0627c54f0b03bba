"""The last step of every report, a build's and a validate's: warnings and the verdict, then report.json, report.md
and report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgedeploy import fileio
from edgedeploy.config import BuildSpec
from edgedeploy.validate import html, notices
from edgedeploy.validate.report import render_markdown, sibling_reports


def finish_report(report: dict[str, Any], spec: BuildSpec) -> dict[str, Any]:
    """Add every warning (evaluate's and edgedeploy.validate.notices'), under `validation.strict` each as a failing
    check, and the verdict."""
    report["warnings"] = list(report.get("warnings", [])) + notices.collect(report, spec)
    report["strict"] = spec.validation.strict
    if spec.validation.strict:
        report["checks"] = report["checks"] + notices.strict_checks(report["warnings"])
    report["passed"] = all(c["passed"] for c in report["checks"])
    return report


def write_reports(report: dict[str, Any], out_dir: Path) -> None:
    """report.json, report.md and report.html; the last two compare with the model's other artifacts built in
    folders beside this one."""
    siblings = sibling_reports(report, out_dir)
    fileio.write_json(out_dir / "report.json", report)
    fileio.write_text(out_dir / "report.md", render_markdown(report, siblings))
    fileio.write_text(out_dir / "report.html", html.render_html(report, siblings))


__all__ = ["finish_report", "write_reports"]
