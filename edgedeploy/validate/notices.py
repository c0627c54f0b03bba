"""Warnings: what a PASS must not hide. Each rule reads a finished report (and the spec it was made with) and returns
the warnings it finds; the verdict line, the top of report.md/report.html and report.json's `warnings` carry them,
and with `--strict` (or `validation.strict: true`) each one is also a failing check `warning.CODE`, for CI.

A warning is ``{"code", "title", "message"}``: `title` is the few words the verdict line shows, `message` the whole
story with its figures. A new warning is one function appended to RULES.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgedeploy.config import BuildSpec
from edgedeploy.tasks import task_of

Rule = Callable[[dict[str, Any], BuildSpec], list[dict[str, str]]]


def warning(code: str, title: str, message: str) -> dict[str, str]:
    return {"code": code, "title": title, "message": message}


_NATURAL_HINT = {"fp32": "f32", "fp16": "f16", "int8": "f32"}  # int8: the layers left in float run in f32


def precision_not_as_requested(report: dict[str, Any], spec: BuildSpec) -> list[dict[str, str]]:
    """The backend ran another precision than the artifact's: the plugin changed the hint it was given (OpenVINO's
    CPU plugin turns f16 into f32 on CPUs without fp16 arithmetic, or into bf16 on CPUs with bf16), or the config
    pinned another one (`openvino.inference_precision`)."""
    c = report.get("conditions", {})
    requested, effective = c.get("precision_hint_requested"), c.get("precision_hint_effective")
    natural = _NATURAL_HINT.get(report.get("precision"))
    if not effective or effective == requested == natural:
        return []
    why = (f"{c.get('backend')} on {c.get('device')} took the precision hint {requested} as {effective} on this "
           "machine" if requested != effective else f"the config pins the precision hint {requested}")
    return [warning("precision_not_as_requested", f"ran in {effective}, not {natural}",
                    f"the {report['precision']} artifact ran in {effective}: {why}, so its accuracy and latency are "
                    f"those of {effective}")]


def accuracy_not_measured(report: dict[str, Any], spec: BuildSpec) -> list[dict[str, str]]:
    """The task metric could not be computed (no labels), or no budget beyond NaN/Inf applied at all."""
    task = report.get("task") or {}
    out = []
    kind = task_of(task)
    if kind is not None and kind.labelled_metric not in task:
        out.append(warning("accuracy_not_measured", "accuracy not measured", kind.no_labels))
    measured = [c for c in report.get("checks", []) if c.get("group") in ("tensor", "task")
                and not c["name"].endswith(".finite") and c.get("status") != "skip"]
    if not measured and not out:
        out.append(warning("accuracy_not_measured", "accuracy not checked",
                           f"no accuracy budget applies to this {report['precision']} build: only NaN/Inf was "
                           f"checked (set validation.task with labelled data, or thresholds.{report['precision']}."
                           "max_rel_l2)"))
    return out


def calibration_too_small(report: dict[str, Any], spec: BuildSpec) -> list[dict[str, str]]:
    calibration = (report.get("precision_stage") or {}).get("calibration") or {}
    size, minimum = calibration.get("size"), spec.calibration.min_samples
    if size is None or size >= minimum:
        return []
    return [warning("calibration_too_small", f"{size} calibration sample{'s' * (size != 1)}",
                    f"INT8 was calibrated on {size} sample{'s' * (size != 1)}, fewer than calibration.min_samples "
                    f"({minimum}): activation ranges from so few samples clip real inputs")]


def latency_unstable(report: dict[str, Any], spec: BuildSpec) -> list[dict[str, str]]:
    out = []
    for t in report.get("latency", []):
        if t.get("unstable"):
            others = t.get("other_cpu_busy")
            load = f"load per core {_pct(t.get('load_per_core'))}" + (
                "" if others is None else f", other processes used {others:.0%} of the CPU while timing")
            out.append(warning("latency_unstable", f"latency CoV {t['cov']:.0%} at batch {t['batch']}",
                               f"latency at batch {t['batch']} is unstable: CoV {t['cov']:.1%} > "
                               f"{t.get('unstable_cov_limit', 0.05):.0%} ({load})"))
        elif (t.get("other_cpu_busy") or 0) > 0.25:
            out.append(warning("latency_loaded", f"CPU {t['other_cpu_busy']:.0%} busy at batch {t['batch']}",
                               f"other processes used {t['other_cpu_busy']:.0%} of the CPU while batch {t['batch']} "
                               "was timed"))
    return out


def int8_slower_than_float(report: dict[str, Any], spec: BuildSpec) -> list[dict[str, str]]:
    """A build times an int8 artifact interleaved with the float graph on the same backend (edgedeploy.pipeline):
    int8 that is slower than float on this machine defeats its purpose."""
    slower = [c for c in (report.get("latency_measurement") or {}).get("int8_vs_float", []) if c.get("slower")]
    if not slower:
        return []
    figures = "; ".join(f"batch {c['batch']}: {c['int8_median_ms']:.3g} ms vs {c['float_median_ms']:.3g} ms "
                        f"({_ratio(c)})" for c in slower)
    return [warning("int8_slower_than_float", "int8 slower than float",
                    f"the INT8 artifact is slower than the float artifact of the same backend on this machine "
                    f"({report['target']}: {figures}); deploy the float artifact, or try `--precision auto`")]


def fp16_ran_as_bf16(report: dict[str, Any], spec: BuildSpec) -> list[dict[str, str]]:
    """An fp16 build the OpenVINO CPU plugin ran in bf16 (a CPU with bf16) that fails only its fp16 accuracy budget:
    the budget was for fp16 arithmetic, so say both ways out."""
    c = report.get("conditions", {})
    failed = [ch for ch in report.get("checks", []) if ch.get("status") == "fail"]
    if (report.get("precision") != "fp16" or c.get("precision_hint_effective") != "bf16" or not failed
            or any(ch.get("group") not in ("tensor", "task") or ch.get("budget") != "fp16" for ch in failed)):
        return []
    names = ", ".join(ch["name"] for ch in failed)
    return [warning("fp16_ran_as_bf16", "fp16 ran as bf16 and misses the fp16 budget",
                    f"the OpenVINO CPU plugin ran this fp16 build in bf16 (this CPU has bf16), and it fails its fp16 "
                    f"budget ({names}): pin `openvino.inference_precision: f16` (or `f32`) to run the precision the "
                    "budget is for, or give a bf16 budget (`thresholds.bf16: {max_rel_l2: ...}`) to judge it as "
                    "bf16")]


_DROP_INTERVALS = {"top1_drop": ("top1_drop_ci95", "samples", "samples"),
                   "map50_drop": ("map50_drop_ci95", "images", "images")}


def budget_below_noise(report: dict[str, Any], spec: BuildSpec) -> list[dict[str, str]]:
    """A task budget narrower than the sampling noise of what it limits: the check passes or fails by the luck of
    which samples were drawn. The interval's half-width shrinks as 1/sqrt(n), so n x (half-width / budget)^2 samples
    would make the budget decidable."""
    task = report.get("task") or {}
    out = []
    for c in report.get("checks", []):
        if c.get("group") != "task" or c["name"] not in _DROP_INTERVALS or c.get("status") == "skip":
            continue
        key, count_key, unit = _DROP_INTERVALS[c["name"]]
        interval, n, limit = task.get(key), task.get(count_key), c.get("limit")
        if not interval or not n or not limit or limit <= 0:
            continue
        half = (interval[1] - interval[0]) / 2
        if half <= limit:
            continue
        needed = int(np.ceil(n * (half / limit) ** 2))
        out.append(warning("budget_below_noise", f"{c['name']} budget below noise",
                           f"the {c['name']} budget {limit:g} is narrower than its sampling noise: the drop measured on "
                           f"{n} {unit} is {task[c['name']]:.4g}, 95% interval {interval[0]:.4g} to {interval[1]:.4g} "
                           f"(±{half:.3g}), so this check passes or fails by which {unit} were drawn; about {needed} "
                           f"{unit} would make a {limit:g} budget decidable (or widen the budget)"))
    return out


def _ratio(c: dict[str, Any]) -> str:
    ratio = c.get("ratio", c["int8_median_ms"] / c["float_median_ms"])
    if "ratio_ci95" not in c:
        return f"{ratio:.2f}x"
    low, high = c["ratio_ci95"]
    return f"{ratio:.2f}x, 95% interval {low:.2f}-{high:.2f}x over {c['rounds']} interleaved rounds"


RULES: list[Rule] = [precision_not_as_requested, accuracy_not_measured, calibration_too_small, latency_unstable,
                     int8_slower_than_float, budget_below_noise, fp16_ran_as_bf16]


def collect(report: dict[str, Any], spec: BuildSpec) -> list[dict[str, str]]:
    return [w for rule in RULES for w in rule(report, spec)]


def strict_checks(warnings: list[dict[str, str]]) -> list[dict[str, Any]]:
    """`--strict`: each warning as a failing check (one per code, naming every instance)."""
    by_code: dict[str, list[dict[str, str]]] = {}
    for w in warnings:
        by_code.setdefault(w["code"], []).append(w)
    return [{"name": f"warning.{code}", "group": "warning", "value": len(ws), "limit": 0, "op": "==",
             "passed": False, "status": "fail", "origin": "strict",
             "message": "; ".join(w["message"] for w in ws) + " (--strict)"} for code, ws in by_code.items()]


def _pct(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.0%}"
