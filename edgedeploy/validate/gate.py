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
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from edgedeploy import __version__, fileio
from edgedeploy.config import (BuildSpec, RegressionSettings, TensorThresholds, Thresholds, ValidationSettings,
                               effective_thresholds)
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.outfolder import OutputFolder

REPORT_SCHEMA = "edgedeploy.report/3"
ACCEPTED_BASELINE_SCHEMAS = ("edgedeploy.report/1", "edgedeploy.report/2", "edgedeploy.report/3")

# task metrics compared with a baseline: higher is better for all of them
_METRIC_KIND = {"map50_drop": "detection", "map50_95_drop": "detection", "top1_drop": "classification",
                "top1_agreement": "classification"}
_BASELINE_TASK_KEYS = ("map50", "map50_95", "map50_vs_reference", "top1", "top5", "top1_agreement", "top5_agreement")


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
_TASK_CHECKS = (("max_map50_drop", "map50_drop", "<="), ("max_map50_95_drop", "map50_95_drop", "<="),
                ("max_top1_drop", "top1_drop", "<="), ("min_top1_agreement", "top1_agreement", ">="))


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
        for key, metric, op in _TASK_CHECKS:
            limit = getattr(budget, key)
            if limit is None:
                continue
            if metric in task:
                checks.append(check(metric, "task", task[metric], limit, op, origin=origin.get(key, "config")))
            elif task.get("kind") == _METRIC_KIND[metric]:
                checks.append(skipped(metric, "task", "the validation data has no labels", limit=limit,
                                      origin=origin.get(key, "config")))
    return checks


# --------------------------------------------------------------------------------------------- baseline
def load_baseline(path: Path) -> dict[str, Any]:
    try:
        baseline = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError("baseline report not found", where=str(path)) from None
    except (OSError, ValueError) as e:
        raise UsageError(f"baseline is not a readable JSON report ({e})", where=str(path)) from None
    if not isinstance(baseline, dict) or baseline.get("schema") not in ACCEPTED_BASELINE_SCHEMAS:
        raise UsageError(f"baseline schema {baseline.get('schema') if isinstance(baseline, dict) else None!r} "
                         f"is not one of {', '.join(ACCEPTED_BASELINE_SCHEMAS)}", where=str(path),
                         fix="use a report.json written by edgedeploy build or validate")
    return baseline


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
    for key in _BASELINE_TASK_KEYS:
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
        checks.append(c)
    return checks


# --------------------------------------------------------------------------------------------- validate
_OVERRIDABLE = {"thresholds", "validation", "regression"}


def apply_config(spec: BuildSpec, path: Path) -> BuildSpec:
    """Overlay thresholds / validation / regression from a YAML file (a full build spec, or just those keys);
    thresholds merge key by key over the build's (which merge over the defaults)."""
    from edgedeploy.config import _describe, load_spec, load_yaml

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
        raise UsageError(_describe(e), where=str(path)) from None
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


def sibling_dir(artifact_dir: Path, suffix: str) -> Path:
    """`ARTIFACT_DIR-suffix` beside an artifact folder: the default report folder of `validate` (and of
    `debug precision`), outside the folder a rebuild replaces."""
    d = Path(artifact_dir)
    if d.name in ("", ".", ".."):
        d = Path(os.path.abspath(d))
    return d.parent / f"{d.name}-{suffix}"


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"{what} not found: not an edgedeploy output folder", where=str(path),
                         fix="pass the folder `edgedeploy build --out` wrote") from None
    except (OSError, ValueError) as e:
        raise UsageError(f"cannot read {what} ({e})", where=str(path)) from None


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


def load_reference(path: Path) -> tuple[dict, dict, np.ndarray | None, np.ndarray | None]:
    """reference.npz → (inputs, reference outputs, detection targets, classification labels)."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UsageError("reference.npz not found", where=str(path), fix="rebuild the artifact") from None
    with data:
        inputs = {k[6:]: data[k] for k in data.files if k.startswith("input.")}
        outputs = {k[7:]: data[k] for k in data.files if k.startswith("output.")}
        targets = data["label.targets"] if "label.targets" in data.files else None
        labels = data["label.labels"] if "label.labels" in data.files else None
    if not inputs or not outputs:
        raise UsageError("reference.npz holds no input.* / output.* arrays", where=str(path))
    return inputs, outputs, targets, labels


def read_manifest(artifact_dir: Path) -> tuple[dict[str, Any], BuildSpec]:
    """manifest.json of a built artifact folder and the build spec it records."""
    if not Path(artifact_dir).is_dir():
        raise UsageError("artifact folder not found", where=str(artifact_dir))
    manifest = _read_json(Path(artifact_dir) / "manifest.json", "manifest.json")
    try:
        return manifest, BuildSpec.model_validate(manifest["spec"])
    except (KeyError, ValidationError) as e:
        raise UsageError(f"manifest.json holds no readable build spec ({type(e).__name__})",
                         where=str(Path(artifact_dir) / "manifest.json")) from None


def validate_artifact(artifact_dir: Path, *, baseline: Path | None = None, config: Path | None = None,
                      out_dir: Path | None = None, junit: Path | None = None, strict: bool = False) -> dict[str, Any]:
    """Re-run the artifact in `artifact_dir` on its stored reference, check thresholds (and a baseline), write
    report.json / report.md / report.html to `out_dir` (default: ARTIFACT_DIR-validate beside it, so a rebuild
    does not wipe it) and JUnit XML to `junit`;
    `strict` turns every warning into a failing check."""
    from edgedeploy.backends import get_backend
    from edgedeploy.backends.base import BuildResult
    from edgedeploy.pipeline import _cpu_name, library_versions
    from edgedeploy.validate import evaluate
    from edgedeploy.validate import junit as junit_xml

    start = time.perf_counter()
    artifact_dir = Path(artifact_dir)
    manifest, spec = read_manifest(artifact_dir)
    if config is not None:
        spec = apply_config(spec, config)
    if strict:
        spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"strict": True})})
    base_report = load_baseline(baseline) if baseline is not None else None
    artifact = manifest.get("artifact")
    if artifact is None:  # manifests before report/2 kept it only in report.json
        artifact = _read_json(artifact_dir / "report.json", "report.json").get("artifact")
    if not artifact:
        raise UsageError("neither manifest.json nor report.json names the artifact", where=str(artifact_dir))
    backend = get_backend(spec.target)
    missing = backend.missing()
    if missing:
        raise EdgeDeployError(missing, fix="install it, or validate on a machine that has it")
    info = {k: v for k, v in artifact.items() if k != "path"}
    built = BuildResult(artifact=artifact_dir / artifact["path"], files=[], info=info)
    if not built.artifact.is_file():
        raise UsageError("the artifact file is missing", where=str(built.artifact))

    inputs, reference, targets, labels = load_reference(artifact_dir / "reference.npz")
    checks = integrity_checks(artifact_dir, manifest)
    settings = {"openvino": spec.openvino, "trt": spec.tensorrt}.get(spec.target)
    runner = backend.load(built, settings, spec.validation.latency.threads)
    result = evaluate.evaluate(spec, runner, inputs, reference, targets, labels)
    count = len(next(iter(inputs.values())))
    report: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "kind": "validate",
        "edgedeploy": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "name": spec.name,
        "target": spec.target,
        "precision": spec.precision,
        "source": manifest.get("source", {}),
        "validation_data": f"reference.npz ({count} samples)",
        "artifact": artifact,
        "artifact_dir": str(artifact_dir),
        "conditions": {**runner.conditions, "machine": platform.machine(), "processor": _cpu_name()},
        "libraries": library_versions(),
        **({"precision_stage": manifest["precision"]} if manifest.get("precision") else {}),
        **{k: result[k] for k in ("tensors", "task", "latency")},
        "checks": checks + result["checks"],
        "warnings": result["warnings"],
    }
    if base_report is not None:
        report["checks"] += baseline_checks(report, base_report, spec.regression, effective_thresholds(spec)[0])
        report["baseline"] = {"path": str(baseline), "edgedeploy": base_report.get("edgedeploy"),
                              "created": base_report.get("created"),
                              "processor": base_report.get("conditions", {}).get("processor")}
    finish_report(report, spec)
    report["wall_seconds"] = time.perf_counter() - start
    out_dir = Path(out_dir) if out_dir is not None else sibling_dir(artifact_dir, "validate")
    inside = Path(os.path.abspath(out_dir)).is_relative_to(os.path.abspath(artifact_dir))
    with OutputFolder(out_dir, lock_for=artifact_dir if inside else None) as folder:  # all three reports or none
        write_reports(report, folder.staging)
        folder.commit()
    if junit is not None:
        fileio.write_text(junit, junit_xml.to_junit(report))
    return report


def finish_report(report: dict[str, Any], spec: BuildSpec) -> dict[str, Any]:
    """Add every warning (evaluate's and edgedeploy.validate.notices'), under `validation.strict` each as a failing
    check, and the verdict."""
    from edgedeploy.validate import notices

    report["warnings"] = list(report.get("warnings", [])) + notices.collect(report, spec)
    report["strict"] = spec.validation.strict
    if spec.validation.strict:
        report["checks"] = report["checks"] + notices.strict_checks(report["warnings"])
    report["passed"] = all(c["passed"] for c in report["checks"])
    return report


def write_reports(report: dict[str, Any], out_dir: Path) -> None:
    """report.json, report.md and report.html; the last two compare with the model's other artifacts built in
    folders beside this one."""
    from edgedeploy.validate import html
    from edgedeploy.validate.report import render_markdown, sibling_reports

    siblings = sibling_reports(report, out_dir)
    fileio.write_json(out_dir / "report.json", report)
    fileio.write_text(out_dir / "report.md", render_markdown(report, siblings))
    fileio.write_text(out_dir / "report.html", html.render_html(report, siblings))


__all__ = ["REPORT_SCHEMA", "check", "finish_report", "sibling_dir", "skipped", "threshold_checks", "baseline_checks", "validate_artifact",
           "load_baseline", "apply_config", "read_manifest", "load_reference", "write_reports", "output_thresholds",
           "ValidationSettings"]
