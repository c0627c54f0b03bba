"""The optimize stage: raw.onnx → deploy.onnx through verified ONNX → ONNX passes.

Default order: prune → fold_affine → merge_branches → fold_affine (folds what merging exposed) → simplify. After
each pass the result is checked with the ONNX checker and run in ONNX Runtime against the model before the pass;
a pass that breaks the checker or moves any kept output beyond tolerance is rolled back (its result dropped) and the
report says so, so a wrong pass can cost speed but never correctness.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedeploy import fileio
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.graph.fold_affine import fold_affine
from edgedeploy.graph.ir import PassStats, op_counts, param_count
from edgedeploy.graph.merge_branches import merge_branches
from edgedeploy.graph.prune import prune_outputs
from edgedeploy.graph.simplify import SIMPLIFIERS, check_size, simplify
from edgedeploy.graph.verify import compare_models, violations
from edgedeploy.onnx_checks import check_external_data

RealInputs = Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]] | None
DEFAULT_PASSES = ("prune", "fold_affine", "merge_branches", "fold_affine", "simplify")
HALF_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)


@dataclass
class OptimizeSettings:
    """What to run and how strictly to verify it.

    tolerance: max rel-L2 per output (float32/64). half_tolerance: the same for float16/bfloat16 outputs, which
    cannot match to 1e-5 once any weight is re-rounded. max_abs_tolerance: max |ref − new| per output, scaled by
    max(1, |ref|max); None disables this guard.
    """

    keep_outputs: list[str] | None = None
    drop_outputs: list[str] = field(default_factory=list)
    simplifier: str = "auto"
    tolerance: float = 1e-5
    max_abs_tolerance: float | None = 1e-4
    half_tolerance: float = 5e-3
    passes: tuple[str, ...] = DEFAULT_PASSES
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
        if not (self.tolerance > 0 and self.half_tolerance > 0):
            raise UsageError("tolerances must be positive", where="optimize tolerance")
        if self.samples < 0 or self.dynamic_dim < 1:
            raise UsageError("samples must be >= 0 and dynamic_dim >= 1", where="optimize settings")


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
    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def node_count_before(self) -> int:
        return sum(self.nodes_before.values())

    @property
    def node_count_after(self) -> int:
        return sum(self.nodes_after.values())


@dataclass
class OptimizeReport:
    """Everything the optimize stage did, JSON-serializable through `to_dict()`."""

    passes: list[PassReport] = field(default_factory=list)
    nodes_before: dict[str, int] = field(default_factory=dict)
    nodes_after: dict[str, int] = field(default_factory=dict)
    params_before: int = 0
    params_after: int = 0
    outputs: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    settings: dict[str, Any] = field(default_factory=dict)
    input_path: str | None = None
    output_path: str | None = None

    def status_of(self, name: str) -> list[str]:
        return [p.status for p in self.passes if p.name == name]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for p in d["passes"]:
            p["node_count_before"] = sum(p["nodes_before"].values())
            p["node_count_after"] = sum(p["nodes_after"].values())
        d["node_count_before"] = sum(self.nodes_before.values())
        d["node_count_after"] = sum(self.nodes_after.values())
        return _jsonable(d)

    def summary(self) -> str:
        """A short plain-text table, one line per pass."""
        lines = [f"{'pass':<16}{'status':<13}{'nodes':>13}{'params':>22}  worst rel_l2"]
        for p in self.passes:
            worst = max((e["rel_l2"] for e in p.errors.values()), default=0.0)
            lines.append(
                f"{p.name:<16}{p.status:<13}{p.node_count_before:>6} → {p.node_count_after:<4}"
                f"{p.params_before:>10} → {p.params_after:<9}  {worst:.2e}" + (f"  ({p.reason})" if p.reason else "")
            )
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


def _tolerances(model: onnx.ModelProto, s: OptimizeSettings) -> dict[str, tuple[float, float | None]]:
    tol = {}
    for o in model.graph.output:
        half = o.type.tensor_type.elem_type in HALF_TYPES
        if half:
            tol[o.name] = (max(s.tolerance, s.half_tolerance), None)
        else:
            tol[o.name] = (s.tolerance, s.max_abs_tolerance)
    return tol


def _run_prune(model: onnx.ModelProto, s: OptimizeSettings, real_inputs: RealInputs):
    return prune_outputs(model, keep=s.keep_outputs, drop=s.drop_outputs)


def _run_fold(model: onnx.ModelProto, s: OptimizeSettings, real_inputs: RealInputs):
    return fold_affine(model)


def _run_merge(model: onnx.ModelProto, s: OptimizeSettings, real_inputs: RealInputs):
    return merge_branches(model)


def _run_simplify(model: onnx.ModelProto, s: OptimizeSettings, real_inputs: RealInputs):
    return simplify(
        model,
        s.simplifier,
        tolerance=s.tolerance,
        max_abs_tolerance=s.max_abs_tolerance,
        per_output_tolerance=_tolerances(model, s),
        real_inputs=real_inputs,
        seed=s.seed,
        samples=s.samples,
        dynamic_dim=s.dynamic_dim,
    )


PassFn = Callable[[onnx.ModelProto, OptimizeSettings, RealInputs], "tuple[onnx.ModelProto, PassStats]"]
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
    """Run the configured passes, each verified against the model before it; returns (new model, report).
    The input model is not modified. UsageError for bad settings, an unknown kept output, a model over 2 GB, or one
    that fails the ONNX checker (the passes and their verification assume a well-formed graph)."""
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
    current = model
    for name in s.passes:
        t0 = time.perf_counter()
        pr = PassReport(name, "unchanged", nodes_before=op_counts(current), params_before=param_count(current))
        pr.nodes_after, pr.params_after = pr.nodes_before, pr.params_before
        try:
            new, stats = PASSES[name](current, s, real_inputs)
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
            pr.status, pr.reason = _verify(current, new, s, real_inputs, pr)
            if pr.status == "applied":
                current = new
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


def _verify(
    before: onnx.ModelProto, after: onnx.ModelProto, s: OptimizeSettings, real_inputs: RealInputs, pr: PassReport
) -> tuple[str, str]:
    try:
        onnx.checker.check_model(after)
    except Exception as exc:  # noqa: BLE001
        return "rolled_back", f"result fails the ONNX checker: {_one_line(exc)}"
    try:
        pr.errors = compare_models(
            before, after, real_inputs, seed=s.seed, samples=s.samples, dynamic_dim=s.dynamic_dim
        )
    except Exception as exc:  # noqa: BLE001
        return "failed", f"could not verify the result: {_one_line(exc)}"
    tol = _tolerances(before, s)
    bad = []
    for out, e in pr.errors.items():
        rel, abs_ = tol.get(out, (s.tolerance, s.max_abs_tolerance))
        bad += violations({out: e}, rel, abs_)
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
    fileio.write_bytes(out_path, result.SerializeToString())
    report.input_path = os.fspath(in_path)
    report.output_path = os.fspath(out_path)
    return report
