"""report.json as one typed model (docs/report-schema.md): a build and `edgedeploy validate` both start it with
`start_report` and fill the rest; `checked` holds what is written to this schema before any renderer sees it."""

from __future__ import annotations

import platform
import time
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgedeploy import __version__
from edgedeploy.config import BuildSpec
from edgedeploy.device import cpu_name, read_conditions
from edgedeploy.errors import EdgeDeployError
from edgedeploy.tasks import TASKS

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


class Record(BaseModel):
    """A part of the report the renderers read: the fields they use are typed; the other figures it carries
    (statistics, provenance) are kept as they are, so report.json is written unchanged."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Check(Record):
    """One comparison of the gate (edgedeploy.validate.gate.check): a value against its limit."""

    name: str
    group: str | None = None
    value: Any = None
    limit: Any = None
    op: str | None = None
    passed: bool
    status: Literal["pass", "fail", "skip"] | None = None  # absent in reports before status existed
    origin: str | None = None
    budget: str | None = None  # the precision's budget the limit came from
    baseline: float | None = None
    message: str | None = None

    @property
    def outcome(self) -> str:
        return self.status or ("pass" if self.passed else "fail")


class TensorErrors(Record):
    """One output's error against the reference (edgedeploy.tensor_error)."""

    max_abs: float
    mean_abs: float | None = None
    rel_l2: float
    cosine: float | None = None
    snr_db: float | None = None
    finite: bool = True
    nan_count: int | None = None
    inf_count: int | None = None
    abs_error_quantiles: list[float] | None = None


class LatencyRow(Record):
    """One batch size's timing (edgedeploy.validate.latency)."""

    batch: int
    median_ms: float
    p90_ms: float | None = None
    p99_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    cov: float | None = None
    unstable: bool = False
    throughput_per_s: float | None = None
    iterations: int | None = None
    warmup: int | None = None
    load_per_core: float | None = None
    other_cpu_busy: float | None = None
    samples_ms: list[float] | None = None
    backend_timing: dict[str, Any] | None = None
    async_: dict[str, Any] | None = Field(None, alias="async")


class Nvpmodel(Record):
    id: int | str
    name: str | None = None


class JetsonConditions(Record):
    nvpmodel: Nvpmodel | None = None
    jetson_clocks: bool | None = None


class CpuConditions(Record):
    governors: list[str] | None = None
    load_1m_per_core: float | None = None


class DeviceConditions(Record):
    """Where it ran (edgedeploy.device.read_conditions): the fields the tables summarize are typed, since a report
    may come from a device."""

    model: str | None = None
    jetson: JetsonConditions | None = None
    cpu: CpuConditions | None = None
    temperatures_c: dict[str, float] | None = None


class Warning(Record):
    """A condition a reader must know about (edgedeploy.validate.notices); under --strict also a failing check."""

    model_config = ConfigDict(extra="forbid")

    code: str
    title: str
    message: str


# report.json's `task`: the record of the task its `kind` names (edgedeploy.tasks: each task declares its model)
TaskRecord = Annotated[Union[tuple(t.record for t in TASKS.values())], Field(discriminator="kind")]  # noqa: UP007


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
    device: DeviceConditions | None
    source: dict[str, Any]
    validation_data: str
    tensors: dict[str, TensorErrors]
    task: TaskRecord | None
    latency: list[LatencyRow]
    checks: list[Check]
    warnings: list[Warning]
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


def field_path(loc: tuple[int | str, ...]) -> str:
    """A validation error's place as a path in report.json (`task.map50`): without the task kind pydantic puts
    after `task` to say which record it read."""
    return ".".join(str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] == "task" and p in TASKS))


def problem(error: dict[str, Any]) -> str:
    """`path`: what is wrong, for one pydantic error of Report (a task record's kind in words of its own)."""
    if error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        return (f"`{field_path(error['loc'])}.kind`: not one of the tasks this version knows "
                f"({', '.join(TASKS)})")
    return f"`{field_path(error['loc'])}`: {error['msg']}"


def typed(report: dict[str, Any]) -> Report:
    """`report` as the typed Report the renderers read (a missing key, an unknown one or a wrong type is a bug here,
    said in one line before anything is written)."""
    try:
        return Report.model_validate(report)
    except ValidationError as e:
        first = e.errors()[0]
        raise EdgeDeployError(f"internal error: the report does not fit {REPORT_SCHEMA}: {problem(first)}",
                              fix="report this as a bug in edgedeploy") from None


__all__ = ["REPORT_SCHEMA", "Check", "LatencyRow", "LayerProfile", "LayerTime", "Report", "TaskRecord", "TensorErrors",
           "Warning", "field_path", "problem", "start_report", "typed"]
