"""The optimize stage: raw.onnx → deploy.onnx through verified ONNX → ONNX passes.

Default order: prune → fold_affine → merge_branches → fold_affine (folds what merging exposed) → simplify. Before the
first pass the input model is measured once (`verify.Reference`: its outputs on seeded and given inputs, and its own
fp32 noise per output); after each pass the result is checked with the ONNX checker and run in ONNX Runtime against
that reference, so the errors of successive passes cannot add up unseen. A pass that breaks the checker or moves any
kept output beyond its limit is rolled back (its result dropped); one whose result could not be checked at all is
`failed`, never `unchanged`; the report says why either way, so a wrong pass can cost speed but never correctness.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedeploy import fileio
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.graph.fold_affine import fold_affine
from edgedeploy.graph.ir import PassStats, op_counts, param_count, subgraphs
from edgedeploy.graph.merge_branches import merge_branches
from edgedeploy.graph.prune import prune_outputs
from edgedeploy.graph.simplify import SIMPLIFIERS, check_size, simplify
from edgedeploy.graph.verify import Checker, RealInputs, Reference, Tolerance, VerifyError
from edgedeploy.onnx_checks import check_external_data

DEFAULT_PASSES = ("prune", "fold_affine", "merge_branches", "fold_affine", "simplify")
NOT_APPLIED = ("rolled_back", "failed")


@dataclass
class OptimizeSettings:
    """What to run and how strictly to verify it.

    An output passes when, on every input set, rel-L2 ≤ max(tolerance, drift_k × drift) and max |ref − new| ≤
    max(max_abs_tolerance × max(1, |ref|max), drift_k × drift_max_abs), drift being the graph's own fp32 noise
    (verify.Reference). half_tolerance is the rel-L2 floor for float16/bfloat16 outputs, which cannot match to 1e-5
    once any weight is re-rounded. max_abs_tolerance None disables the max-abs guard. input_shapes fixes the size of
    dynamic dims (NAME → full shape); dynamic_dim is the leading dynamic dim of the random inputs.
    """

    keep_outputs: list[str] | None = None
    drop_outputs: list[str] = field(default_factory=list)
    simplifier: str = "auto"
    tolerance: float = 1e-5
    max_abs_tolerance: float | None = 1e-4
    half_tolerance: float = 5e-3
    drift_k: float = 8.0
    passes: tuple[str, ...] = DEFAULT_PASSES
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    seed: int = 0
    samples: int = 2
    dynamic_dim: int = 2

    def validate(self) -> None:
        unknown = [p for p in self.passes if p not in PASSES]
        if unknown:
            raise UsageError(
                f"unknown optimize pass '{unknown[0]}'", where="optimize passes", fix=f"Use any of {', '.join(PASSES)}"
            )
        if self.simplifier not in SIMPLIFIERS:
            raise UsageError(
                f"unknown simplifier '{self.simplifier}'",
                where="optimize simplifier",
                fix=f"Use one of {', '.join(SIMPLIFIERS)}",
            )
        if not (self.tolerance > 0 and self.half_tolerance > 0 and self.drift_k > 0):
            raise UsageError("tolerances must be positive", where="optimize tolerance")
        if self.samples < 0 or self.dynamic_dim < 1:
            raise UsageError("samples must be >= 0 and dynamic_dim >= 1", where="optimize settings")

    def tolerance_rule(self) -> Tolerance:
        return Tolerance(self.tolerance, self.max_abs_tolerance, self.drift_k, self.half_tolerance)


@dataclass
class PassReport:
    """One pass: status is applied / unchanged / rolled_back / failed (reason says why)."""

    name: str
    status: str
    reason: str = ""
    nodes_before: dict[str, int] = field(default_factory=dict)
    nodes_after: dict[str, int] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def node_count_before(self) -> int:
        return sum(self.nodes_before.values())

    @property
    def node_count_after(self) -> int:
        return sum(self.nodes_after.values())

    def worst(self) -> tuple[float, float | None]:
        """(rel-L2, limit) of the output nearest its limit, for tables."""
        if not self.errors:
            return 0.0, None
        e = max(self.errors.values(), key=lambda r: r.get("ratio", r["rel_l2"]))
        return e["rel_l2"], e.get("limit_rel_l2")


@dataclass
class OptimizeReport:
    """Everything the optimize stage did, JSON-serializable through `to_dict()`.

    `verification` holds the input shapes (and which sizes were chosen), the input sets, the tolerance rule and the
    measured drift and limit of every output on every input set; `errors` is the deployed graph's error against the
    input model, output by output, with its limit.
    """

    passes: list[PassReport] = field(default_factory=list)
    nodes_before: dict[str, int] = field(default_factory=dict)
    nodes_after: dict[str, int] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    outputs: list[str] = field(default_factory=list)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    input_path: str | None = None
    output_path: str | None = None

    def status_of(self, name: str) -> list[str]:
        return [p.status for p in self.passes if p.name == name]

    def not_applied(self) -> list[PassReport]:
        return [p for p in self.passes if p.status in NOT_APPLIED]

    def warnings(self) -> list[str]:
        """One line per pass that was not applied (rolled back, or failed), with its reason; then what limited the
        verification itself (outputs the inputs could not check finely)."""
        return [f"pass {p.name} {p.status.replace('_', ' ')}: {p.reason}" for p in self.not_applied()] + \
            list(self.verification.get("warnings", []))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for p in d["passes"]:
            p["node_count_before"] = sum(p["nodes_before"].values())
            p["node_count_after"] = sum(p["nodes_after"].values())
        d["node_count_before"] = sum(self.nodes_before.values())
        d["node_count_after"] = sum(self.nodes_after.values())
        return _jsonable(d)

    def summary(self) -> str:
        """A short plain-text table, one line per pass, and the input shapes verification ran at."""
        lines = [f"{'pass':<16}{'status':<13}{'nodes':>13}{'params':>22}  rel_l2 (limit) nearest its limit"]
        for p in self.passes:
            worst, limit = p.worst()
            shown = f"{worst:.2e}" + (f" ({limit:.1e})" if limit is not None else "")
            reason = f"  ({p.reason[:160]}{'...' if len(p.reason) > 160 else ''})" if p.reason else ""
            lines.append(
                f"{p.name:<16}{p.status:<13}{p.node_count_before:>6} → {p.node_count_after:<4}"
                f"{p.params_before:>10} → {p.params_after:<9}  {shown}{reason}"
            )
        for name, info in self.verification.get("input_shapes", {}).items():
            axes = f" ({'; '.join(info['dynamic_axes'])})" if info["dynamic_axes"] else ""
            lines.append(f"input {name}: {'x'.join(map(str, info['shape']))}{axes}")
        return "\n".join(lines)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else str(v)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (os.PathLike,)):
        return os.fspath(obj)
    return obj


# ------------------------------------------------------------------------------------------------ pass registry


def _run_prune(model: onnx.ModelProto, s: OptimizeSettings, check: Checker):
    return prune_outputs(model, keep=s.keep_outputs, drop=s.drop_outputs)


def _run_fold(model: onnx.ModelProto, s: OptimizeSettings, check: Checker):
    return fold_affine(model)


def _run_merge(model: onnx.ModelProto, s: OptimizeSettings, check: Checker):
    return merge_branches(model)


def _run_simplify(model: onnx.ModelProto, s: OptimizeSettings, check: Checker):
    return simplify(model, s.simplifier, check=check)


PassFn = Callable[[onnx.ModelProto, OptimizeSettings, Checker], "tuple[onnx.ModelProto, PassStats]"]
PASSES: dict[str, PassFn] = {
    "prune": _run_prune,
    "fold_affine": _run_fold,
    "merge_branches": _run_merge,
    "simplify": _run_simplify,
}


# ------------------------------------------------------------------------------------------------ driver


def _one_line(exc: BaseException, limit: int = 400) -> str:
    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def optimize_model(
    model: onnx.ModelProto, settings: OptimizeSettings | None = None, real_inputs: RealInputs = None
) -> tuple[onnx.ModelProto, OptimizeReport]:
    """Run the configured passes, each verified against the input model; returns (new model, report).
    The input model is not modified. UsageError for bad settings, an unknown kept output, an input shape that
    contradicts the model, a model over 2 GB, or one that fails the ONNX checker (the passes and their verification
    assume a well-formed graph)."""
    s = settings or OptimizeSettings()
    s.validate()
    check_size(model)
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError, and others for protos the checker cannot read
        raise UsageError(f"the model fails the ONNX checker: {_one_line(exc, 300).rstrip('.')}", where="optimize input",
                         fix="Fix or re-export the model; optimize only takes graphs the checker accepts") from exc
    t_start = time.perf_counter()
    report = OptimizeReport(
        nodes_before=op_counts(model),
        params_before=param_count(model),
        settings=_jsonable(asdict(s)),
    )
    check = _reference_check(model, s, real_inputs, report)
    current = model
    for name in s.passes:
        t0 = time.perf_counter()
        pr = PassReport(name, "unchanged", nodes_before=op_counts(current), params_before=param_count(current))
        pr.nodes_after, pr.params_after = pr.nodes_before, pr.params_before
        try:
            new, stats = PASSES[name](current, s, check)
            pr.details = stats.to_dict()
        except UsageError:
            raise
        except Exception as exc:  # noqa: BLE001 - a broken pass must not break the stage
            pr.status, pr.reason = "failed", _one_line(exc)
            pr.wall_s = time.perf_counter() - t0
            report.passes.append(pr)
            continue
        if stats.changed:
            pr.nodes_after, pr.params_after = op_counts(new), param_count(new)
            pr.status, pr.reason = _verify(new, check, pr)
            if pr.status == "applied":
                current = new
                report.errors = pr.errors
        elif getattr(stats, "not_applied", lambda: None)() is not None:
            pr.status, pr.reason = stats.not_applied()
        pr.wall_s = time.perf_counter() - t0
        report.passes.append(pr)
    report.nodes_after = op_counts(current)
    report.params_after = param_count(current)
    report.outputs = [o.name for o in current.graph.output]
    report.wall_s = time.perf_counter() - t_start
    if current is model:
        current = onnx.ModelProto()
        current.CopyFrom(model)
    return current, report


def _reference_check(model: onnx.ModelProto, s: OptimizeSettings, real_inputs: RealInputs,
                     report: OptimizeReport) -> Checker:
    """Measure the input model once (outputs, drift) and return the check every pass result goes through; when it
    cannot be measured, a check that fails with that reason (so every changed pass is `failed`, with it)."""
    t0 = time.perf_counter()
    try:
        reference = Reference.measure(model, real_inputs, shapes=s.input_shapes, tolerance=s.tolerance_rule(),
                                      seed=s.seed, samples=s.samples, batch=s.dynamic_dim)
    except VerifyError as exc:
        why = exc.what
        report.verification = {"error": why, "wall_s": time.perf_counter() - t0}

        def cannot(_: onnx.ModelProto) -> tuple[dict, list[str]]:
            raise VerifyError(why)

        return cannot
    report.verification = {
        "input_shapes": reference.shapes.to_dict(),
        "shapes_that_failed": reference.tried,
        "input_sets": [st.label for st in reference.sets],
        "rule": "rel_l2 <= max(floor, k * drift_rel_l2) and max_abs <= max(max_abs_floor * max(1, |ref|max), "
                "k * drift_max_abs) per output and input set; drift: the input model's outputs moved by +-1 ulp "
                "on every float input element",
        "tolerance": asdict(reference.tolerance),
        "drift": reference.drift_table(),
        "warnings": reference.warnings(),
        "wall_s": time.perf_counter() - t0,
    }
    return reference.check


def _verify(after: onnx.ModelProto, check: Checker, pr: PassReport) -> tuple[str, str]:
    try:
        onnx.checker.check_model(after)
    except Exception as exc:  # noqa: BLE001
        return "rolled_back", f"result fails the ONNX checker: {_one_line(exc)}"
    try:
        pr.errors, bad = check(after)
    except VerifyError as exc:
        return "failed", f"could not be checked: {exc.what}"
    except Exception as exc:  # noqa: BLE001
        return "failed", f"could not be checked: {_one_line(exc)}"
    if bad:
        return "rolled_back", "outputs changed beyond tolerance: " + "; ".join(bad)
    return "applied", ""


# ------------------------------------------------------------------------------------------------ files


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load an ONNX file (with its external data, if any); UsageError naming the file when it is missing, corrupt,
    truncated, or fails the ONNX checker."""
    p = Path(path)
    if not p.is_file():
        raise UsageError("model file not found", where=str(p), fix="Check the path (the export stage writes raw.onnx)")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises DecodeError and friends
        raise UsageError(
            f"not a readable ONNX model (corrupt or truncated file): {_one_line(exc, 200)}",
            where=str(p),
            fix="Re-export the model",
        ) from exc
    if not model.HasField("graph") or not model.graph.output:
        raise UsageError(
            "the file holds no ONNX graph (empty, truncated, or not an ONNX model)",
            where=str(p),
            fix="Re-export the model",
        )
    check_external_data(model, p)  # before any is read: inside the model's folder, and there
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        total = sum(int({e.key: e.value for e in t.external_data}.get("length", 0) or 0) for t in external)
        if total > 2**31 - 1:
            raise UsageError(
                f"model weights are {total / 2**30:.2f} GiB, over the 2 GiB protobuf limit the optimize stage needs",
                where=str(p),
                fix="Skip the optimize stage for this model and deploy it as exported",
            )
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(p.parent))
        except Exception as exc:  # noqa: BLE001
            raise UsageError(
                f"cannot read the model's external data: {_one_line(exc, 200)}", where=str(p), fix="Re-export the model"
            ) from exc
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(
            f"the model fails the ONNX checker (corrupt, truncated, or invalid): {_one_line(exc, 300)}",
            where=str(p),
            fix="Re-export the model",
        ) from exc
    return model


# ONNX element types up to BFLOAT16 (16) predate IR 8; a model using a later one (float8, int4, ...) keeps its IR version
_OLDEST_TYPES = 16


def _elem_types(graph: onnx.GraphProto) -> Iterator[int]:
    for vi in (*graph.input, *graph.output, *graph.value_info):
        if vi.type.HasField("tensor_type"):
            yield vi.type.tensor_type.elem_type
    yield from (t.data_type for t in graph.initializer)
    for node in graph.node:
        yield from (a.t.data_type for a in node.attribute if a.type == onnx.AttributeProto.TENSOR)
        for sub in subgraphs(node):
            yield from _elem_types(sub)


def lowest_ir_version(model: onnx.ModelProto) -> int:
    """The lowest IR version the model's opsets allow (onnx's opset-to-IR table), never above its own. The onnx
    package writes its newest IR version (IR 14 for onnx 1.23) whatever the opset, and a device's runtime refuses a
    newer IR than it knows (onnxruntime 1.23.2, the newest on JetPack 6's Python 3.10, reads up to IR 11), so
    deploy.onnx, and every artifact made from it, carries the IR version its content needs rather than the
    writer's. A model with element types newer than IR 8 (float8, int4, ...) keeps its own."""
    if any(t > _OLDEST_TYPES for t in _elem_types(model.graph)):
        return model.ir_version
    needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if model.functions:
        needed = max(needed, 8)  # model-local functions came with IR 8
    return min(model.ir_version, needed) if model.ir_version else needed


def optimize_file(
    in_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: OptimizeSettings | None = None,
    real_inputs: RealInputs = None,
) -> OptimizeReport:
    """Load `in_path`, optimize, check, and write the result atomically (one self-contained file) to `out_path`."""
    model = load_model(in_path)
    result, report = optimize_model(model, settings, real_inputs)
    try:
        onnx.checker.check_model(result)
    except Exception as exc:  # noqa: BLE001 - every pass was checked, so this is a bug
        raise EdgeDeployError(
            f"the optimized model fails the ONNX checker: {_one_line(exc)}",
            where=str(out_path),
            fix="Rerun without the optimize stage and report this bug",
        ) from exc
    result.ir_version = lowest_ir_version(result)
    fileio.write_bytes(out_path, result.SerializeToString())
    report.input_path = os.fspath(in_path)
    report.output_path = os.fspath(out_path)
    return report
