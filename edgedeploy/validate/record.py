"""report.json as one typed model (docs/report-schema.md): a build and `edgedeploy validate` both start it with
`start_report` and fill the rest; `checked` holds what is written to this schema before any renderer sees it."""

from __future__ import annotations

import platform
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgedeploy import __version__
from edgedeploy.config import BuildSpec
from edgedeploy.device import cpu_name, read_conditions
from edgedeploy.errors import EdgeDeployError

REPORT_SCHEMA = "edgedeploy.report/3"


class LayerTime(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str
    median_ms: float
    share: float  # of the layers' total
    runs: int


class LayerProfile(BaseModel):
    """Per-layer times of the artifact, from a backend that times its layers (TensorRT's IProfiler)."""

    model_config = ConfigDict(extra="forbid")

    profiler: str
    batch: int
    iterations: int
    layers: list[LayerTime]  # slowest first


class Report(BaseModel):
    """Every key of report.json; build-only and validate-only keys are left out of the JSON when not set."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal["edgedeploy.report/3"] = Field(REPORT_SCHEMA, alias="schema")
    kind: Literal["build", "validate"]
    edgedeploy: str
    created: str
    name: str
    target: str
    precision: str
    artifact: dict[str, Any]
    conditions: dict[str, Any]
    identity: dict[str, Any] | None = None  # what was measured (model, I/O, task, data): binds baselines
    device: dict[str, Any] | None
    source: dict[str, Any]
    validation_data: str
    tensors: dict[str, dict[str, Any]]
    task: dict[str, Any] | None
    latency: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    passed: bool
    strict: bool
    precision_stage: dict[str, Any] | None = None
    wall_seconds: float | None = None
    # build only
    optimize: dict[str, Any] | None = None
    stage_cache: dict[str, Any] | None = None
    bundle: dict[str, Any] | None = None
    latency_measurement: dict[str, Any] | None = None
    layer_profile: LayerProfile | None = None
    layer_errors: list[dict[str, Any]] | None = None
    stage_seconds: dict[str, float] | None = None
    stage_peak_rss_mb: dict[str, float] | None = None
    peak_rss_mb: float | None = None
    auto: dict[str, Any] | None = None
    # validate only
    artifact_dir: str | None = None
    libraries: dict[str, str | None] | None = None
    baseline: dict[str, Any] | None = None


def start_report(kind: str, spec: BuildSpec, artifact: dict[str, Any], runner_conditions: dict[str, Any],
                 ) -> dict[str, Any]:
    """The keys every report starts with, the same for a build and a validate: schema, who and when, what was built,
    and where it ran (the runner's conditions with the machine, and the device's)."""
    return {
        "schema": REPORT_SCHEMA,
        "kind": kind,
        "edgedeploy": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "name": spec.name,
        "target": spec.target,
        "precision": spec.precision,
        "artifact": artifact,
        "conditions": {**runner_conditions, "machine": platform.machine(), "processor": cpu_name()},
        "device": read_conditions(),
    }


def checked(report: dict[str, Any]) -> dict[str, Any]:
    """`report` as it is, once it fits the schema (a missing key, an unknown one or a wrong type is a bug here,
    said in one line before anything is written)."""
    try:
        Report.model_validate(report)
    except ValidationError as e:
        first = e.errors()[0]
        raise EdgeDeployError(f"internal error: the report does not fit {REPORT_SCHEMA}: "
                              f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}",
                              fix="report this as a bug in edgedeploy") from None
    return report


__all__ = ["REPORT_SCHEMA", "LayerProfile", "LayerTime", "Report", "checked", "start_report"]
