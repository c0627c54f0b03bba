"""The regression gate: named pass/fail checks from thresholds, from a baseline report, and `validate_artifact`.

A check is a dict ``{"name", "group", "value", "limit", "op", "passed", "status", "origin", "message"}``; ``status``
is ``pass``, ``fail`` or ``skip`` (a skipped check does not fail the run and says why in ``message``); ``origin`` is
where its limit came from.

Latency regression noise guard: the current median fails only when it exceeds the baseline median by more than
``max(latency_tolerance, latency_cov_factor × sqrt(cov_baseline² + cov_current²))``. The fixed part covers the
run-to-run drift of a median on a quiet machine (measured in docs/validation.md); the CoV part widens the budget when
either run was noisy, so a loaded CI runner reports a wide but honest budget instead of a false failure. Latency is
compared only when backend, processor, threads and the effective precision hint match the baseline's (a CI runner
is not the machine the baseline was timed on); otherwise the check is skipped with the reason.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StrictFloat, StrictInt,
                      ValidationError, create_model)

from edgedeploy import arrayfile, fileio
from edgedeploy.config import (BuildSpec, Precision, RegressionSettings, Target, TensorThresholds, Thresholds,
                               ValidationSettings, describe_validation_error, load_spec, load_yaml)
from edgedeploy.errors import UsageError
from edgedeploy.preprocess import DatasetRef, Placement, check_input, check_targets
from edgedeploy.tasks import TASKS
from edgedeploy.tasks.base import TaskResults
from edgedeploy.validate.latency import median_ratio_interval
from edgedeploy.validate.notices import warning
from edgedeploy.validate.record import REPORT_SCHEMA

ACCEPTED_BASELINE_SCHEMAS = ("edgedeploy.report/1", "edgedeploy.report/2", "edgedeploy.report/3")



def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def check(name: str, group: str, value: Any, limit: Any, op: str, origin: str = "always") -> dict[str, Any]:
    """A named comparison: op is `<=`, `>=` or `==`; `origin` says where the limit came from: `default`, `config`,
    `baseline`, `always` (checks that cannot be turned off) or `strict`."""
    passed = {"<=": lambda: value <= limit, ">=": lambda: value >= limit, "==": lambda: value == limit}[op]()
    passed = bool(passed)
    verb = "within" if passed else {"<=": "exceeds", ">=": "below", "==": "differs from"}[op]
    return {"name": name, "group": group, "value": value, "limit": limit, "op": op, "passed": passed,
            "status": "pass" if passed else "fail", "origin": origin,
            "message": f"{name} = {_fmt(value)} {verb} limit {op} {_fmt(limit)}"}


def skipped(name: str, group: str, reason: str, value: Any = None, limit: Any = None,
            origin: str = "always") -> dict[str, Any]:
    return {"name": name, "group": group, "value": value, "limit": limit, "op": None, "passed": True,
            "status": "skip", "origin": origin, "message": f"{name} skipped: {reason}"}


def output_thresholds(budget: Thresholds, output: str) -> TensorThresholds:
    """The tensor budgets for one output: the precision's, overridden by `budget.outputs[output]` where set (a key
    set to null there turns that check off for this output)."""
    base = {k: getattr(budget, k) for k in TensorThresholds.model_fields}
    override = budget.outputs.get(output)
    if override is not None:
        base.update(override.model_dump(exclude_unset=True))
    return TensorThresholds(**base)


_TENSOR_KEYS = (("max_rel_l2", "rel_l2", "<="), ("max_abs", "max_abs", "<="), ("min_cosine", "cosine", ">="),
                ("min_snr_db", "snr_db", ">="))


def threshold_checks(budget: Thresholds | None, tensors: dict[str, dict], task: dict | None,
                     origin: dict[str, str] | None = None) -> list[dict]:
    """Every budget for this precision as a check, each with its `origin` (`default` or `config`, from
    edgedeploy.config.effective_thresholds; `always` for NaN/Inf, which is always checked)."""
    origin = origin or {}
    checks = []
    for name, m in tensors.items():
        bad = int(m.get("nan_count", 0)) + int(m.get("inf_count", 0))
        c = check(f"{name}.finite", "tensor", bad, 0, "==", origin="always")
        c["message"] = (f"{name} has {m.get('nan_count', 0)} NaN and {m.get('inf_count', 0)} Inf of "
                        f"{m.get('elements', '?')} values" if bad else f"{name}: no NaN/Inf")
        checks.append(c)
        if budget is None:
            continue
        t = output_thresholds(budget, name)
        for key, metric, op in _TENSOR_KEYS:
            limit = getattr(t, key)
            if limit is not None:
                source = origin.get(f"outputs.{name}.{key}", origin.get(key, "config"))
                checks.append(check(f"{name}.{metric}", "tensor", m[metric], limit, op, origin=source))
    if task and budget:
        for each in TASKS.values():
            for b in each.budgets:
                limit = getattr(budget, b.key)
                if limit is None:
                    continue
                if b.metric in task:
                    checks.append(check(b.metric, "task", task[b.metric], limit, b.op,
                                        origin=origin.get(b.key, "config")))
                elif task.get("kind") == each.name:
                    checks.append(skipped(b.metric, "task", "the validation data has no labels", limit=limit,
                                          origin=origin.get(b.key, "config")))
    return checks


# --------------------------------------------------------------------------------------------- baseline
_MAX_JSON_BYTES = 64 << 20  # reports and manifests are KiB to a few MiB


class _Record(BaseModel):
    """Part of a JSON file edgedeploy wrote and reads back: the fields it uses are typed and finite (a number given
    as a string, a list for an object, NaN are refused naming the key); the others are kept as they are."""

    model_config = ConfigDict(extra="allow", frozen=True, allow_inf_nan=False)


class BaselineTensor(_Record):
    rel_l2: StrictFloat = Field(ge=0)


class BaselineLatency(_Record):
    batch: StrictInt = Field(ge=1)
    median_ms: StrictFloat = Field(gt=0)
    cov: StrictFloat = Field(0.0, ge=0)


# the task metrics a baseline is compared on (every task's baseline_metrics), each a finite float when present
BaselineTask = create_model("BaselineTask", __base__=_Record,
                            **{m: (StrictFloat | None, None) for t in TASKS.values() for m in t.baseline_metrics})


class Baseline(_Record):
    """A committed report.json compared against (`validate --baseline`)."""

    schema_: Literal[ACCEPTED_BASELINE_SCHEMAS] = Field(alias="schema")
    target: Target
    precision: Precision
    edgedeploy: str | None = None
    created: str | None = None
    task: BaselineTask | None = None
    tensors: dict[str, BaselineTensor] = Field(default_factory=dict)
    latency: list[BaselineLatency] = Field(default_factory=list)
    conditions: dict[str, JsonValue] = Field(default_factory=dict)
    identity: dict[str, JsonValue] | None = None  # reports before the model identity have none


def _inside(path: str) -> str:
    """A path recorded in a manifest: relative and inside the folder (no `..`, not absolute)."""
    parts = Path(path).parts
    if not path or "\0" in path or Path(path).is_absolute() or ".." in parts:
        raise ValueError(f"{path!r} is not a path inside the artifact folder")
    return path


InsidePath = Annotated[str, AfterValidator(_inside)]


class ManifestArtifact(_Record):
    path: InsidePath


class Manifest(_Record):
    """manifest.json of a build folder: what validate and debug read from it."""

    schema_: Literal["edgedeploy.manifest/1"] = Field(alias="schema")
    spec: BuildSpec
    artifact: ManifestArtifact | None = None  # manifests before report/2 kept it only in report.json
    files: dict[InsidePath, Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(default_factory=dict)
    source: dict[str, JsonValue] = Field(default_factory=dict)


def _validated(model: type[BaseModel], raw: Any, path: Path, what: str, fix: str) -> BaseModel:
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"]).replace("schema_", "schema") or "(top level)"
        key = key if key.isprintable() else repr(key)[1:-1]
        more = e.error_count() - 1
        raise UsageError(f"{what} `{key}`: {first['msg']}" + (f" (and {more} more)" if more else ""),
                         where=str(path), fix=fix) from None


def load_baseline(path: Path) -> dict[str, Any]:
    fix = "use a report.json written by edgedeploy build or validate"
    baseline = _read_json(Path(path), "baseline report", fix)
    if not isinstance(baseline, dict) or baseline.get("schema") not in ACCEPTED_BASELINE_SCHEMAS:
        raise UsageError(f"baseline schema {baseline.get('schema') if isinstance(baseline, dict) else None!r} "
                         f"is not one of {', '.join(ACCEPTED_BASELINE_SCHEMAS)}", where=str(path), fix=fix)
    return _validated(Baseline, baseline, Path(path), "baseline", fix).model_dump(by_alias=True)


def _latency_mismatch(current: dict, baseline: dict) -> str | None:
    cur, base = current.get("conditions", {}), baseline.get("conditions", {})
    for key in ("backend", "processor", "threads", "precision_hint_effective", "device"):
        if cur.get(key) != base.get(key):
            return f"{key} differs from the baseline's ({cur.get(key)!r} vs {base.get(key)!r})"
    return None


def baseline_checks(current: dict, baseline: dict, regression: RegressionSettings,
                    budget: Thresholds | None) -> list[dict]:
    """Accuracy and latency regressions of `current` against a baseline report of the same target and precision."""
    for key in ("target", "precision"):
        if current.get(key) != baseline.get(key):
            raise UsageError(f"the baseline is for {key} {baseline.get(key)!r}, the artifact is {current.get(key)!r}",
                             fix="pass the baseline made for this target and precision")
    checks = []
    cur_task, base_task = current.get("task") or {}, baseline.get("task") or {}
    for key in [m for t in TASKS.values() for m in t.baseline_metrics]:
        if key in cur_task and key in base_task and base_task[key] is not None:
            limit = base_task[key] - regression.max_task_drop
            c = check(f"baseline.{key}", "baseline", cur_task[key], limit, ">=", origin="baseline")
            c["baseline"] = base_task[key]
            checks.append(c)
    for name, m in current.get("tensors", {}).items():
        base = baseline.get("tensors", {}).get(name)
        if not base:
            checks.append(skipped(f"baseline.{name}.rel_l2", "baseline", "the baseline has no such output",
                                  origin="baseline"))
            continue
        floor = 0.0
        if budget is not None:
            t = output_thresholds(budget, name)
            floor = 0.1 * t.max_rel_l2 if t.max_rel_l2 is not None else 0.0
        limit = max(base["rel_l2"] * regression.max_rel_l2_growth, floor)
        c = check(f"baseline.{name}.rel_l2", "baseline", m["rel_l2"], limit, "<=", origin="baseline")
        c["baseline"] = base["rel_l2"]
        checks.append(c)
    mismatch = _latency_mismatch(current, baseline)
    base_lat = {t["batch"]: t for t in baseline.get("latency", [])}
    for t in current.get("latency", []):
        name = f"baseline.latency.batch{t['batch']}.median_ms"
        b = base_lat.get(t["batch"])
        if b is None:
            checks.append(skipped(name, "latency", "the baseline has no timing at this batch size", origin="baseline"))
            continue
        guard = regression.latency_cov_factor * math.hypot(b.get("cov", 0.0), t.get("cov", 0.0))
        allowed = max(regression.latency_tolerance, guard)
        limit = b["median_ms"] * (1 + allowed)
        if mismatch and regression.latency_same_machine_only:
            checks.append(skipped(name, "latency", mismatch, t["median_ms"], limit, origin="baseline"))
            continue
        c = check(name, "latency", t["median_ms"], limit, "<=", origin="baseline")
        c.update({"baseline": b["median_ms"], "allowed_slowdown": allowed,
                  "noise_guard": "cov" if guard > regression.latency_tolerance else "tolerance"})
        c["message"] += (f" (baseline {b['median_ms']:.4g} ms + {allowed:.1%}; "
                         f"{'CoV noise guard' if guard > regression.latency_tolerance else 'fixed tolerance'})")
        checks.append(_latency_decision(c, t, b, 1 + allowed))
    return checks


def _latency_decision(c: dict[str, Any], current: dict[str, Any], base: dict[str, Any], allowed_ratio: float
                      ) -> dict[str, Any]:
    """The latency check decided on the ratio current/baseline with its 95 % bootstrap interval over both runs'
    stored samples: fail only when the whole interval is above the allowed ratio; `undecided` (passing, and said
    as a warning) when the interval straddles it."""
    samples, base_samples = current.get("samples_ms"), base.get("samples_ms")
    if not samples or not base_samples:
        return c
    interval = median_ratio_interval(samples, base_samples)
    low, high = interval["ci95"]
    c.update(ratio=interval["ratio"], ratio_ci95=interval["ci95"], allowed_ratio=allowed_ratio)
    c["undecided"] = low <= allowed_ratio < high
    c["passed"] = low <= allowed_ratio
    c["status"] = "pass" if c["passed"] else "fail"
    if c["passed"]:
        c["message"] = c["message"].replace(" exceeds limit", " above limit, not beyond noise,")
    c["message"] += f"; ratio {interval['ratio']:.2f}x, 95% {low:.2f}-{high:.2f}x" + (
        " (cannot decide)" if c["undecided"] else "")
    return c


# --------------------------------------------------------------------------------------------- model identity
def model_identity(spec: BuildSpec, deploy_path: Path, reference_path: Path) -> dict[str, Any]:
    """What a report measured, so a baseline is compared only with the same thing: the deploy graph (sha256 of the
    ONNX file and its external data) and its inputs/outputs (name → [element type, dims]), the task, the validation
    data (sha256 over the inputs and labels of reference.npz, not the reference outputs, which a new PyTorch may
    round differently), the target and precision."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        graph = onnx.load(str(deploy_path), load_external_data=False).graph
    except (OSError, DecodeError) as e:
        raise UsageError(f"cannot read the deploy graph ({e.__class__.__name__})", where=str(deploy_path),
                         fix="rebuild the artifact") from None
    initializers = {i.name for i in graph.initializer}

    def signature(values) -> dict[str, list]:
        return {v.name: [onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type),
                         [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]]
                for v in values if v.name not in initializers}

    digest = fileio.sha256_file(deploy_path)
    data = deploy_path.with_name(deploy_path.name + ".data")
    if data.is_file():
        digest = fileio.sha256_bytes((digest + fileio.sha256_file(data)).encode())
    return {"deploy_sha256": digest, "inputs": signature(graph.input), "outputs": signature(graph.output),
            "task": spec.validation.task, "validation_data_sha256": _validation_data_sha256(reference_path),
            "target": spec.target, "precision": spec.precision}


def _validation_data_sha256(reference_path: Path) -> str:
    import hashlib
    import zipfile

    digest = hashlib.sha256()
    with zipfile.ZipFile(reference_path) as archive:
        for name in sorted(n for n in archive.namelist() if not n.startswith(("output.", "task."))):
            digest.update(name.encode() + b"\0")
            with archive.open(name) as member:
                for chunk in iter(lambda: member.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


_IDENTITY_NAMES = {"task": "task", "outputs": "output set", "inputs": "input set", "validation_data_sha256":
                   "validation data", "deploy_sha256": "model (deploy graph)"}


def identity_difference(current: dict[str, Any], baseline: dict[str, Any]) -> str | None:
    """The first way the baseline measured something else than `current`, in words; None when it is the same model,
    task, output set and data. A baseline from before identities were recorded is compared on what it has: its
    output names and the kind of its task metrics."""
    cur, base = current.get("identity") or {}, baseline.get("identity")
    if base:
        for key, what in _IDENTITY_NAMES.items():
            a, b = base.get(key), cur.get(key)
            if a != b:
                if key in ("inputs", "outputs") and isinstance(a, dict) and isinstance(b, dict) and set(a) != set(b):
                    return f"{what}: the baseline's {sorted(a)}, this artifact's {sorted(b)}"
                shown = (lambda v: v[:12] if isinstance(v, str) and len(v) == 64 else v)
                return f"{what}: the baseline's {shown(a)!r}, this artifact's {shown(b)!r}"
        return None
    base_outputs, cur_outputs = set(baseline.get("tensors") or {}), set(current.get("tensors") or {})
    if base_outputs != cur_outputs:
        return f"output set: the baseline's {sorted(base_outputs)}, this artifact's {sorted(cur_outputs)}"
    kinds = {_task_kind(baseline.get("task")), _task_kind(current.get("task"))}
    if len(kinds) > 1:
        return f"task: the baseline's {_task_kind(baseline.get('task'))}, this artifact's {_task_kind(current.get('task'))}"
    return None


def _task_kind(task: dict | None) -> str:
    task = task or {}
    if task.get("kind"):
        return str(task["kind"])
    keys = {k for k, v in task.items() if v is not None}
    return ("detection" if keys & {"map50", "map50_95", "map50_vs_reference"} else
            "classification" if keys & {"top1", "top5", "top1_agreement", "top5_agreement"} else "none")


def bind_baseline(report: dict[str, Any], baseline: dict[str, Any], baseline_path: Path,
                  accept_model_change: bool) -> dict[str, Any]:
    """The report's `baseline` record; a baseline of another model, task, output set or data set is refused in one
    line naming the difference, unless `accept_model_change` (a deliberate re-baseline), which is recorded."""
    difference = identity_difference(report, baseline)
    record = {"path": str(baseline_path), "edgedeploy": baseline.get("edgedeploy"), "created": baseline.get("created"),
              "processor": baseline.get("conditions", {}).get("processor"),
              "identity": "missing" if not baseline.get("identity") else "same" if difference is None else "differs"}
    if difference is not None and not accept_model_change:
        raise UsageError(f"the baseline measured another {difference}", where=str(baseline_path),
                         fix="pass this model's baseline, or --accept-model-change to re-baseline deliberately after "
                             "a model change")
    if difference is not None:
        record["model_change_accepted"] = difference
    return record


def baseline_warnings(report: dict[str, Any]) -> list[dict[str, str]]:
    """What a PASS against a baseline must not hide (each a failure under --strict): baseline checks that were
    skipped (one warning naming each), a latency check that cannot decide or whose noise guard allows 2x or more, a
    baseline with no model identity, or one accepted as another model's."""
    out = []
    skipped_checks = [c for c in report.get("checks", []) if c.get("origin") == "baseline" and c.get("status") == "skip"]
    if skipped_checks:
        names = ", ".join(f"{c['name']} ({c['message']})" for c in skipped_checks)
        out.append(warning("baseline_check_skipped", f"{len(skipped_checks)} baseline check(s) skipped",
                           f"not compared with the baseline: {names}"))
    record = report.get("baseline") or {}
    if record.get("identity") == "missing":
        out.append(warning("baseline_without_identity", "baseline has no model identity",
                           "the baseline report predates model identities, so only its output names and task were "
                           "matched: keep a newer report.json of this model as the baseline"))
    for c in report.get("checks", []):
        if c.get("origin") == "baseline" and c.get("undecided"):
            out.append(warning("latency_gate_undecided", f"{c['name']} cannot decide",
                               f"the latency ratio to the baseline, {c['ratio']:.2f}x (95% {c['ratio_ci95'][0]:.2f}-"
                               f"{c['ratio_ci95'][1]:.2f}x), straddles the allowed {c['allowed_ratio']:.2f}x: this run "
                               "cannot tell a regression from noise (time on a quieter machine, or longer)"))
        elif c.get("origin") == "baseline" and c.get("allowed_slowdown", 0) >= 1.0:
            out.append(warning("latency_gate_blind", f"{c['name']} allows {1 + c['allowed_slowdown']:.1f}x",
                               f"the noise guard widened the allowed slowdown to {c['allowed_slowdown']:.0%} because "
                               "the runs' CoV is high: any regression smaller than that passes unseen"))
    if record.get("model_change_accepted"):
        out.append(warning("baseline_model_changed", "baseline of another model accepted",
                           f"--accept-model-change: compared with a baseline that measured another "
                           f"{record['model_change_accepted']}"))
    return out


# --------------------------------------------------------------------------------------------- validate
_OVERRIDABLE = {"thresholds", "validation", "regression"}


def apply_config(spec: BuildSpec, path: Path) -> BuildSpec:
    """Overlay thresholds / validation / regression from a YAML file (a full build spec, or just those keys);
    thresholds merge key by key over the build's (which merge over the defaults)."""
    raw = load_yaml(path)
    if not isinstance(raw, dict):
        raise UsageError("config must be a YAML mapping", where=str(path))
    if "model" in raw:
        cfg = load_spec(path)
        raw = {k: v for k, v in cfg.model_dump(mode="json").items() if k in _OVERRIDABLE and k in raw}
    unknown = set(raw) - _OVERRIDABLE
    if unknown:
        raise UsageError(f"unknown key(s) {sorted(unknown)} in a validate config", where=str(path),
                         fix=f"a validate config may set {', '.join(sorted(_OVERRIDABLE))} (or be a full build spec)")
    merged = spec.model_dump(mode="json")
    for key, value in raw.items():
        if key == "validation" and isinstance(value, dict):
            merged["validation"] = {**merged["validation"], **value}
        elif key == "thresholds" and isinstance(value, dict):
            merged["thresholds"] = _merge_thresholds(merged["thresholds"], value)
        else:
            merged[key] = value
    try:
        new = BuildSpec.model_validate(merged)
    except ValidationError as e:
        raise UsageError(describe_validation_error(e), where=str(path)) from None
    data = new.validation.data
    if data is not None and not data.is_absolute():
        new = new.model_copy(update={"validation": new.validation.model_copy(
            update={"data": (Path(path).parent / data).resolve()})})
    return new


def _merge_thresholds(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` (a config's thresholds) over `base`, per precision, per key, and per output per key."""
    merged = {p: {**t, "outputs": {n: dict(o) for n, o in t.get("outputs", {}).items()}} for p, t in base.items()}
    for precision, t in over.items():
        if not isinstance(t, dict) or not isinstance(merged.get(precision, {}), dict):
            merged[precision] = t  # not a mapping: let the model's validation name the problem
            continue
        into = merged.setdefault(precision, {"outputs": {}})
        for key, value in t.items():
            if key == "outputs" and isinstance(value, dict):
                for name, o in value.items():
                    into["outputs"][name] = {**into["outputs"].get(name, {}), **o} if isinstance(o, dict) else o
            else:
                into[key] = value
    return merged


def _read_json(path: Path, what: str, fix: str) -> Any:
    """A JSON file edgedeploy wrote, read without trusting it (a regular file, at most _MAX_JSON_BYTES)."""
    data = fileio.read_input(path, what, max_bytes=_MAX_JSON_BYTES, fix=fix)
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise UsageError(f"the {what} is not readable JSON ({reason})", where=str(path), fix=fix) from None


def integrity_checks(artifact_dir: Path, manifest: dict) -> list[dict]:
    """Every file the manifest lists still has its recorded hash (the artifact is the one that was built)."""
    changed = []
    for rel, digest in manifest.get("files", {}).items():
        p = artifact_dir / rel
        if not p.is_file() or fileio.sha256_file(p) != digest:
            changed.append(rel)
    c = check("artifact.files_unchanged", "artifact", len(changed), 0, "==")
    c["message"] = (f"changed or missing since the build: {', '.join(changed)}" if changed
                    else f"{len(manifest.get('files', {}))} files match manifest.json")
    c["changed"] = changed
    return [c]


@dataclass
class StoredReference:
    """reference.npz: the tensor sample's inputs and reference outputs, the labels of the whole set and, when the
    set is larger than the sample, the reference's task results on every sample and the dataset they came from."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    targets: np.ndarray | None
    labels: np.ndarray | None
    results: TaskResults | None = None
    dataset: DatasetRef | None = None
    placement: Placement | None = None


def reference_arrays(inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                     task: str, results: TaskResults | None, dataset: DatasetRef | None,
                     placement: Placement | None = None) -> dict[str, np.ndarray]:
    """What reference.npz holds (StoredReference's fields as numeric arrays; `labels`: label.targets /
    label.labels)."""
    arrays = {**{f"input.{k}": v for k, v in inputs.items()}, **{f"output.{k}": v for k, v in outputs.items()},
              **labels}
    if results is not None:
        arrays.update({f"task.{k}": v for k, v in TASKS[task].pack(results).items()})
        arrays["task.info"] = np.frombuffer(json.dumps(results.info, sort_keys=True).encode(), np.uint8)
    if dataset is not None:
        arrays["dataset.sha256"] = np.frombuffer(dataset.sha256.encode("ascii"), np.uint8)
        arrays["dataset.indices"] = np.asarray(dataset.indices, np.int64)
    if placement is not None:
        arrays["placement.image_ids"], arrays["placement.transforms"] = placement.image_ids, placement.transforms
        if placement.category_ids is not None:
            arrays["placement.category_ids"] = placement.category_ids
    return arrays


def load_reference(path: Path, spec: BuildSpec | None = None, fix: str = "rebuild the artifact"
                   ) -> tuple[dict, dict, np.ndarray | None, np.ndarray | None]:
    """reference.npz → (inputs, reference outputs, detection targets, classification labels); see load_stored."""
    stored = load_stored(path, spec, fix)
    return stored.inputs, stored.outputs, stored.targets, stored.labels


def load_stored(path: Path, spec: BuildSpec | None = None, fix: str = "rebuild the artifact") -> StoredReference:
    """reference.npz, read as untrusted arrays (edgedeploy.arrayfile) and checked against each other (one sample
    count for the tensor sample, one for the whole set) and `spec`'s inputs."""
    with arrayfile.open_npz(path, "reference.npz", fix=fix) as data:
        inputs = {k[6:]: data[k] for k in data.files if k.startswith("input.")}
        outputs = {k[7:]: data[k] for k in data.files if k.startswith("output.")}
        targets = data["label.targets"] if "label.targets" in data.files else None
        labels = data["label.labels"] if "label.labels" in data.files else None
        task = {k[5:]: data[k] for k in data.files if k.startswith("task.")}
        sha = data["dataset.sha256"] if "dataset.sha256" in data.files else None
        indices = data["dataset.indices"] if "dataset.indices" in data.files else None
        placed = {k[10:]: data[k] for k in data.files if k.startswith("placement.")}
    if not inputs or not outputs:
        raise UsageError("reference.npz holds no input.* / output.* arrays", where=str(path), fix=fix)
    counts = {f"{kind}.{k}": len(v) for kind, arrays in (("input", inputs), ("output", outputs))
              for k, v in arrays.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise UsageError(f"reference.npz arrays hold different or no sample counts ({counts})", where=str(path),
                         fix=fix)
    for spec_in in spec.inputs if spec is not None else []:
        if spec_in.name not in inputs:
            raise UsageError(f"reference.npz has no input {spec_in.name!r} (has {sorted(inputs)})", where=str(path),
                             fix=fix)
        try:
            check_input(spec_in, inputs[spec_in.name], str(path))
        except UsageError as e:
            raise UsageError(f"reference.npz {e.what}", where=str(path), fix=fix) from None
    dataset = _stored_dataset(sha, indices, path, fix)
    count = len(dataset.indices) if dataset is not None else len(next(iter(inputs.values())))
    if targets is not None:
        check_targets(targets, str(path), "label.targets")
    if labels is not None and (labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != count):
        raise UsageError(f"reference.npz `label.labels` must be one integer per sample, got {labels.dtype} "
                         f"{list(labels.shape)}", where=str(path), fix=fix)
    results = _stored_results(task, count, path, fix) if dataset is not None else None
    return StoredReference(inputs, outputs, targets, labels, results, dataset, _placement(placed, count, path, fix))


def _placement(placed: dict[str, np.ndarray], count: int, path: Path, fix: str) -> Placement | None:
    if not placed:
        return None
    ids, transforms, cats = placed.get("image_ids"), placed.get("transforms"), placed.get("category_ids")
    if ids is None or transforms is None or ids.shape != (count,) or ids.dtype.kind not in "iu" or \
            transforms.shape != (count, 6) or (cats is not None and (cats.ndim != 1 or cats.dtype.kind not in "iu")):
        raise UsageError(f"reference.npz placement.* arrays are not one image id and transform per sample ({count})",
                         where=str(path), fix=fix)
    return Placement(ids, transforms.astype(np.float64), cats)


def _stored_dataset(sha: np.ndarray | None, indices: np.ndarray | None, path: Path, fix: str) -> DatasetRef | None:
    if sha is None and indices is None:
        return None
    digest = bytes(sha.astype(np.uint8)).decode("ascii", "replace") if sha is not None and sha.ndim == 1 else ""
    if indices is None or indices.ndim != 1 or indices.dtype.kind not in "iu" or not re.fullmatch(r"[0-9a-f]{64}",
                                                                                                   digest):
        raise UsageError("reference.npz `dataset.sha256` / `dataset.indices` are not a sha256 and one record index "
                         "per sample", where=str(path), fix=fix)
    return DatasetRef(digest, tuple(int(i) for i in indices))


def _stored_results(task: dict[str, np.ndarray], count: int, path: Path, fix: str) -> TaskResults:
    """The reference's task results on every sample of a set larger than its tensor sample."""
    try:
        info = json.loads(bytes(task.pop("info").astype(np.uint8)).decode())
        results = TASKS[info["task"]].unpack(task, info)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise UsageError(f"reference.npz task.* arrays do not hold task results ({type(e).__name__}: {e})",
                         where=str(path), fix=fix) from None
    if len(results.items) != count:
        raise UsageError(f"reference.npz holds task results for {len(results.items)} of {count} samples",
                         where=str(path), fix=fix)
    return results


def check_build_folder(artifact_dir: Path) -> None:
    """Refuse an ARTIFACT_DIR that is missing or not a folder (before a report folder or a lock is made for it)."""
    if not Path(artifact_dir).is_dir():
        raise UsageError("the artifact folder is a file, not a folder" if Path(artifact_dir).exists() else
                         "artifact folder not found", where=str(artifact_dir),
                         fix="pass the folder `edgedeploy build --out` wrote")


def read_manifest(artifact_dir: Path) -> tuple[dict[str, Any], BuildSpec]:
    """manifest.json of a built artifact folder (typed: `Manifest`) and the build spec it records."""
    check_build_folder(artifact_dir)
    path = Path(artifact_dir) / "manifest.json"
    fix = "pass the folder `edgedeploy build --out` wrote, or rebuild it"
    if not path.exists():
        raise UsageError("manifest.json not found: not an edgedeploy output folder", where=str(path), fix=fix)
    raw = _read_json(path, "manifest.json", fix)
    if not isinstance(raw, dict) or "spec" not in raw:
        raise UsageError("manifest.json holds no build spec", where=str(path), fix=fix)
    manifest = _validated(Manifest, raw, path, "manifest.json", fix)
    return manifest.model_dump(by_alias=True, mode="json"), manifest.spec


def artifact_record(artifact_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The artifact's record (path, and what the backend recorded) from manifest.json, or from report.json for
    manifests written before report/2."""
    artifact = manifest.get("artifact")
    if artifact is None:
        path, fix = artifact_dir / "report.json", "rebuild the artifact"
        raw = _read_json(path, "report.json", fix)
        if not isinstance(raw, dict) or not raw.get("artifact"):
            raise UsageError("neither manifest.json nor report.json names the artifact", where=str(artifact_dir),
                             fix=fix)
        artifact = _validated(ManifestArtifact, raw["artifact"], path, "report.json artifact", fix).model_dump()
    return artifact


__all__ = ["model_identity", "identity_difference", "bind_baseline", "baseline_warnings",
           "REPORT_SCHEMA", "check", "skipped", "threshold_checks", "baseline_checks", "load_baseline", "apply_config",
           "read_manifest", "artifact_record", "integrity_checks", "load_reference", "load_stored", "StoredReference",
           "reference_arrays", "output_thresholds",
           "ValidationSettings"]
