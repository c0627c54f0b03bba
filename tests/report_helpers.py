"""A typed Report (edgedeploy.validate.record) from the few keys a renderer test is about: the other required keys
get the values of an empty validate report."""

from __future__ import annotations

from typing import Any

from edgedeploy.validate.record import REPORT_SCHEMA, Report

EMPTY: dict[str, Any] = {
    "schema": REPORT_SCHEMA, "kind": "validate", "edgedeploy": "0", "created": "2026-01-01T00:00:00+0000",
    "name": "m", "target": "onnxruntime", "precision": "fp32", "artifact": {"path": "a"}, "conditions": {},
    "device": None, "source": {}, "validation_data": "d", "tensors": {}, "task": None, "latency": [], "checks": [],
    "warnings": [], "passed": True, "strict": False}


def report_of(fields: dict[str, Any]) -> Report:
    return Report.model_validate({**EMPTY, **{k: v for k, v in fields.items() if k != "schema"}})
