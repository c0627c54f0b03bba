"""The last step of every report, a build's and a validate's: warnings and the verdict, then report.json, report.md
and report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgedeploy import fileio
from edgedeploy.config import BuildSpec
from edgedeploy.preprocess import to_pictures
from edgedeploy.validate import html, notices
from edgedeploy.validate.record import Report, typed
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


def write_reports(report: dict[str, Any], out_dir: Path, spec: BuildSpec | None = None,
                  inputs: dict[str, np.ndarray] | None = None) -> Report:
    """report.json (once it fits the typed Report, edgedeploy.validate.record), then report.md and report.html
    rendered from that Report; the two compare with the model's other artifacts built in folders beside this one,
    and report.html draws the validation `inputs` (preprocessed by `spec`) the task section names, when given.
    Returns the Report."""
    record = typed(report)
    siblings = sibling_reports(record, out_dir)
    drawn = pictures(record, spec, inputs) if spec is not None and inputs is not None else {}
    fileio.write_json(out_dir / "report.json", report)
    fileio.write_text(out_dir / "report.md", render_markdown(record, siblings))
    fileio.write_text(out_dir / "report.html", html.render_html(record, siblings, drawn))
    return record


def pictures(report: Report, spec: BuildSpec, inputs: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """The validation images report.html draws (the detection section's disagreeing images), by index, made back
    from the model inputs: the boxes are in model-input pixels. A streamed set keeps only its first inputs, so an
    image beyond them is listed in the report but not drawn."""
    x = inputs.get(spec.inputs[0].name)
    if x is None or x.ndim != 4:
        return {}
    wanted = [d.image for d in getattr(report.task, "disagreeing", None) or [] if d.image < len(x)]
    if not wanted:
        return {}
    return dict(zip(wanted, to_pictures(x[wanted], spec.preprocess)))


__all__ = ["finish_report", "pictures", "write_reports"]
