"""Run the third-party graph simplifiers (onnxsim, onnxslim) and keep only a result that is verified equal.

Both tools do constant folding and pattern fusions we do not want to rewrite ourselves, but each has graphs it gets
wrong or gives up on. So every candidate is run on a copy, checked (ONNX checker, then ONNX Runtime against the input
model), and discarded with a reported reason if it raises, fails a check, or changes an output. `auto` tries onnxsim,
onnxslim and both chained in either order, and keeps the smallest verified graph (fewest nodes, then fewest
parameters); the input model itself is always a candidate, so the result is never bigger. Every chain starts from
our own exact fold of computed constants (graph/constants.py: CastLike/Expand/Shape chains over constants, which
the tools leave), itself a candidate.

Models over 2 GiB (or with weights still in external files) are refused with a UsageError: neither tool nor the
ONNX Runtime check can take them as one protobuf message.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import onnx

from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.graph.constants import fold_constants
from edgedeploy.graph.ir import PassStats, param_count
from edgedeploy.graph.verify import Checker, RealInputs, Reference

SIMPLIFIERS = ("auto", "onnxsim", "onnxslim", "none")
PROTOBUF_LIMIT = 2**31 - 1  # bytes: a ModelProto cannot be serialized past this


@dataclass
class Candidate:
    """One simplifier run (or chain) and what came of it."""

    name: str
    status: str  # "verified", "failed" (raised / not valid ONNX / could not be checked), "rejected" (outputs
    # changed beyond the limit), "skipped" (would repeat a shorter chain, or its prefix was not verified)
    reason: str = ""
    nodes: int | None = None
    params: int | None = None
    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "nodes": self.nodes,
            "params": self.params,
            "errors": self.errors,
            "wall_s": round(self.wall_s, 4),
        }


def model_bytes(model: onnx.ModelProto) -> int:
    """Serialized size of `model` (weights held inline included)."""
    return model.ByteSize()


def check_size(model: onnx.ModelProto, what: str = "model") -> None:
    """Refuse models the tools here cannot serialize (over 2 GB, or weights still in external files)."""
    size = model_bytes(model)
    if size > PROTOBUF_LIMIT:
        raise UsageError(
            f"{what} is {size / 2**30:.2f} GiB, over the 2 GiB protobuf limit; the simplifiers and ONNX Runtime "
            "verification need it in memory as one message",
            where="optimize",
            fix="Skip the optimize stage for this model and deploy it as exported",
        )
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise UsageError(
                f"initializer '{t.name}' is still in an external data file",
                where="optimize",
                fix="Load the model with its external data (onnx.load(path) next to its .data file) before optimizing",
            )


def _quiet(fn: Callable[[], Any]) -> Any:
    """Run `fn` without letting the simplifiers' progress tables reach our stdout."""
    with contextlib.redirect_stdout(io.StringIO()):
        return fn()


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    return m


def run_onnxsim(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxsim 0.8 on a copy; its own random check is off (we verify ourselves), so is its Z3 certification."""
    import onnxsim

    wanted = {"check_n": 0, "certify": False, "range_opt": False, "check_hazards": False, "check_gradients": False}
    try:
        params = inspect.signature(onnxsim.simplify).parameters
        kwargs = {k: v for k, v in wanted.items() if k in params}
    except (TypeError, ValueError):
        kwargs = {"check_n": 0}
    result, ok = _quiet(lambda: onnxsim.simplify(_copy(model), **kwargs))
    if not ok:
        raise RuntimeError("onnxsim reported that its result could not be checked")
    return result


def run_onnxslim(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim on a copy."""
    import onnxslim

    result = _quiet(lambda: onnxslim.slim(_copy(model)))
    if not isinstance(result, onnx.ModelProto):
        raise RuntimeError(f"onnxslim returned {type(result).__name__}, not a model")
    return result


def run_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Our own exact pre-fold of computed constants the tools leave (see graph/constants.py)."""
    return fold_constants(model)[0]


RUNNERS: dict[str, Callable[[onnx.ModelProto], onnx.ModelProto]] = {
    "constants": run_constants,
    "onnxsim": run_onnxsim,
    "onnxslim": run_onnxslim,
}


def _size(model: onnx.ModelProto) -> tuple[int, int]:
    return len(model.graph.node), param_count(model)


def _plan(simplifier: str) -> list[tuple[str, ...]]:
    """Chains to try; each starts from our constant pre-fold, whose result is a candidate of its own."""
    if simplifier == "none":
        return []
    tools = [("onnxsim",), ("onnxslim",), ("onnxsim", "onnxslim"), ("onnxslim", "onnxsim")]
    if simplifier != "auto":
        tools = [(simplifier,)]
    return [("constants",)] + [("constants",) + t for t in tools]


def simplify(
    model: onnx.ModelProto,
    simplifier: str = "auto",
    *,
    check: Checker | None = None,
    real_inputs: RealInputs = None,
) -> tuple[onnx.ModelProto, PassStats]:
    """The smallest verified result among the chosen simplifier runs (the input model if none is smaller).

    `check(candidate)` returns (errors, violations) against the reference (optimize passes the stage's
    `Reference`, whose limits are calibrated to the graph's own fp32 noise); without it the input model is measured
    as the reference, on `real_inputs` too. `stats.details["candidates"]` lists every run with its status and
    reason: a simplifier that raises or whose result fails the ONNX checker is `failed`, one whose result cannot be
    run is `failed` (it could not be checked), one that changes an output beyond its limit is `rejected`.
    """
    if simplifier not in SIMPLIFIERS:
        raise UsageError(
            f"unknown simplifier '{simplifier}'",
            where="optimize simplifier",
            fix=f"Use one of {', '.join(SIMPLIFIERS)}",
        )
    check_size(model)
    if check is None:
        check = Reference.measure(model, real_inputs).check
    stats = SimplifyStats("simplify")
    best, best_key, best_name = model, (len(model.graph.node), param_count(model)), "input"
    results: dict[tuple[str, ...], onnx.ModelProto] = {}
    for chain in _plan(simplifier):
        name = "+".join(chain)
        prefix = results.get(chain[:-1]) if len(chain) > 1 else model
        if len(chain) > 2 and prefix is not None and _size(prefix) == _size(results.get(chain[:-2], model)):
            # the chain's last-but-one tool changed nothing measurable: this chain would repeat a shorter one
            stats.candidates.append(Candidate(name, "skipped", f"{chain[-2]} changed nothing before it"))
            continue
        if prefix is None:
            why = f"{'+'.join(chain[:-1])} gave no verified result, so the chain was not run"
            stats.candidates.append(Candidate(name, "skipped", why))
            continue
        t0 = time.perf_counter()
        cand = Candidate(name, "failed")
        try:
            out = RUNNERS[chain[-1]](prefix)
            onnx.checker.check_model(out)
        except Exception as exc:  # noqa: BLE001 - third-party tools raise anything
            cand.reason = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            cand.wall_s = time.perf_counter() - t0
            stats.candidates.append(cand)
            continue
        cand.nodes, cand.params = len(out.graph.node), param_count(out)
        try:
            cand.errors, bad = check(out)
        except Exception as exc:  # noqa: BLE001 - could not be checked: failed, never "unchanged"
            text = exc.what if isinstance(exc, EdgeDeployError) else f"{type(exc).__name__}: {exc}"
            cand.reason = f"could not be checked: {' '.join(text.split())[:600]}"
            cand.wall_s = time.perf_counter() - t0
            stats.candidates.append(cand)
            continue
        missing = [o.name for o in model.graph.output if o.name not in {x.name for x in out.graph.output}]
        if missing:
            bad.append(f"outputs missing: {', '.join(missing)}")
        cand.wall_s = time.perf_counter() - t0
        if bad:
            cand.status, cand.reason = "rejected", "; ".join(bad)
        else:
            cand.status = "verified"
            results[chain] = out
            key = (cand.nodes, cand.params)
            if key < best_key:
                best, best_key, best_name = out, key, name
        stats.candidates.append(cand)
    stats.chosen = best_name
    for c in stats.candidates:
        if c.status in ("failed", "rejected"):
            stats.note(f"{c.name} {c.status}: {c.reason}")
    if best is not model:
        stats.count("nodes_removed", len(model.graph.node) - best_key[0])
        stats.count("simplified", 1)
        return best, stats
    return _copy(model), stats


@dataclass
class SimplifyStats(PassStats):
    """PassStats plus every candidate the simplifiers produced and which one was kept."""

    candidates: list[Candidate] = field(default_factory=list)
    chosen: str = "input"

    def not_applied(self) -> tuple[str, str] | None:
        """When nothing was kept and a candidate was rejected or failed: the pass's status and reason (a rejected
        candidate is a rollback; one that raised or could not be checked is a failure). None otherwise."""
        if self.changed:
            return None
        for status, pass_status in (("rejected", "rolled_back"), ("failed", "failed")):
            hit = [c for c in self.candidates if c.status == status]
            if hit:
                return pass_status, "; ".join(f"{c.name} {status}: {c.reason}" for c in hit)
        return None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["chosen"] = self.chosen
        d["candidates"] = [c.to_dict() for c in self.candidates]
        return d
