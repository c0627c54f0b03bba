"""Check that two ONNX models compute the same thing, by running both in ONNX Runtime on the same inputs.

Graph optimizations are disabled in the sessions so that ORT's own fusions (which fold BatchNormalization, for one)
cannot hide a difference between the graphs. Inputs are seeded random tensors at the shapes `edgedeploy.shapes`
resolves (every dim that is not a positive integer is dynamic), alternating N(0, 1) and U(0, 1) floats (normalised
and 0..1-scaled images), plus any real inputs the caller gives.

How much a *correct* rewrite may move an output depends on the graph: an exact reordering of fp32 arithmetic moves
the outputs of a deep net whose activations reach 1e3..1e7 by rel-L2 1e-5..1e-4, a shallow one's by 1e-7. So
`Reference` measures, per input set and output, the graph's own fp32 noise (`drift`): how far the outputs of the
*unchanged* graph move when every float input element moves by one ulp, up or down at random. A candidate passes when
each output's error on each input set is within max(floor, k × drift) (docs/optimize-corpus.md has the measurements
behind the input perturbation, k and the floor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx

from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.shapes import DEFAULT_BATCH, InputShapes, graph_inputs, resolve_shapes
from edgedeploy.tensor_error import tensor_errors as errors_of

HALF_TYPES = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
SIZES = (64, 32, 128, 224, 256, 320, 512, 48, 96, 16, 8, 1)  # tried in order for dims nobody gave a size for
Feeds = Mapping[str, np.ndarray]
RealInputs = Feeds | Sequence[Feeds] | None

__all__ = ["Reference", "Tolerance", "VerifyError", "compare_models", "graph_inputs", "perturb_ulp", "random_inputs",
           "run", "session", "tensor_errors", "violations"]


class VerifyError(EdgeDeployError):
    """The models could not be compared (a model does not run on any input edgedeploy could make for it)."""


@dataclass(frozen=True)
class Tolerance:
    """Accept an output when rel_l2 ≤ max(rel_l2, k·drift_rel_l2) and max_abs ≤ max(max_abs·max(1, |ref|max),
    k·drift_max_abs). `half_rel_l2` is the floor for float16/bfloat16 outputs (no max-abs floor there).

    An input set on which k·drift_rel_l2 exceeds `cap` cannot check that output in rel-L2 (a saturated sigmoid whose
    values are a few ulps, say): it is left out of the rel-L2 check while another set can check the output; when
    none can, the limit is `cap`, so no rewrite that moves an output by more than that is ever accepted unseen.
    """

    rel_l2: float = 1e-5
    max_abs: float | None = 1e-4
    k: float = 8.0
    half_rel_l2: float = 5e-3
    cap: float = 1e-2

    def limits(self, drift: Mapping[str, float], ref_max_abs: float, half: bool) -> tuple[float | None, float]:
        """(rel-L2 limit, or None when this input set cannot check the output in rel-L2; max-abs limit)."""
        floor_rel = max(self.rel_l2, self.half_rel_l2) if half else self.rel_l2
        rel = max(floor_rel, self.k * drift["rel_l2"])
        usable = rel if rel <= max(self.cap, floor_rel) else None
        if half or self.max_abs is None:
            return usable, float("inf")
        return usable, max(self.max_abs * max(1.0, ref_max_abs), self.k * drift["max_abs"])


def random_inputs(model: onnx.ModelProto, seed: int = 0, dynamic_dim: int = 2,
                  shapes: Mapping[str, Sequence[int]] | None = None, kind: str = "normal") -> dict[str, np.ndarray]:
    """Seeded random feeds: floats ~ N(0, 1) (`kind="uniform"`: U(0, 1)), integers in [0, 4), booleans fair coin;
    at `shapes`, else every dynamic dim = dynamic_dim."""
    if shapes is None:
        shapes = resolve_shapes(model, size=dynamic_dim, batch=dynamic_dim).shapes
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for vi in graph_inputs(model):
        elem = vi.type.tensor_type.elem_type
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
        shape = tuple(shapes[vi.name])
        if np.issubdtype(dtype, np.floating):
            values = rng.standard_normal(shape) if kind == "normal" else rng.random(shape)
            feeds[vi.name] = values.astype(dtype)
        elif dtype == np.bool_:
            feeds[vi.name] = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            feeds[vi.name] = rng.integers(0, 4, size=shape).astype(dtype)
        else:
            raise UsageError(f"graph input of type {onnx.TensorProto.DataType.Name(elem)} cannot be generated",
                             where=f"input '{vi.name}'", fix="Give real inputs for verification")
    return feeds


def perturb_ulp(feeds: Feeds, seed: int = 0) -> dict[str, np.ndarray]:
    """`feeds` with every float element moved one ulp up or down (seeded coin per element); other dtypes as given."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, value in feeds.items():
        v = np.asarray(value)
        if v.dtype.kind == "f":
            toward = np.where(rng.random(v.shape) < 0.5, np.inf, -np.inf).astype(v.dtype)
            v = np.nextafter(v, toward).astype(v.dtype)
        out[name] = v
    return out


def session(model: onnx.ModelProto):
    """An ONNX Runtime CPU session with all graph optimizations off."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4  # a run that fails raises; its log line would only repeat that on stderr
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, feeds: Feeds, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Run `model` once in ORT (optimizations off) and return its outputs by name."""
    sess = session(model)
    names = list(outputs) if outputs is not None else [o.name for o in sess.get_outputs()]
    return _run(sess, names, feeds)


def tensor_errors(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    """max_abs and rel_l2 (edgedeploy.tensor_error), both inf when the shapes differ or a NaN/Inf does not match."""
    a, b = np.asarray(ref), np.asarray(cand)
    if a.shape == b.shape:
        e = errors_of(a, b, quantiles=False)
        if not e["mismatched_nonfinite"]:
            return {"max_abs": e["max_abs"], "rel_l2": e["rel_l2"], "ref_max_abs": e["ref_max_abs"]}
    return {"max_abs": float("inf"), "rel_l2": float("inf"), "ref_max_abs": _max_abs(a)}


def _max_abs(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(np.max(np.abs(a))) if a.size else 0.0


@dataclass
class InputSet:
    label: str
    feeds: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # the reference model's
    drift: dict[str, dict[str, float]] = field(default_factory=dict)  # output → rel_l2, max_abs under ±1 ulp


@dataclass
class Reference:
    """The unchanged model's outputs on every input set, with its own fp32 noise; candidates are checked against it.

    `measure` builds it; `check(candidate)` returns per-output errors (and the limit each was held to) and the
    violations. Every candidate is compared with this one model, so errors of successive passes cannot add up
    unseen.
    """

    output_names: list[str]
    half_outputs: set[str]
    sets: list[InputSet]
    shapes: InputShapes
    tolerance: Tolerance = field(default_factory=Tolerance)
    tried: list[str] = field(default_factory=list)  # shapes that failed before `shapes` ran

    @classmethod
    def measure(cls, model: onnx.ModelProto, inputs: RealInputs = None, *,
                shapes: Mapping[str, Sequence[int]] | None = None, tolerance: Tolerance | None = None,
                seed: int = 0, samples: int = 2, batch: int = DEFAULT_BATCH, drift: bool = True,
                sizes: Sequence[int] = SIZES) -> Reference:
        """Run `model` on `samples` random input sets (N(0,1), U(0,1), ...) and each real set; measure its drift.

        Dims nobody gave a size for (no `shapes`, not in `inputs`) take the first of `sizes` at which the model
        runs; VerifyError when it runs at none (or at the given shapes)."""
        given = [_as_model_inputs(model, g) for g in ([inputs] if isinstance(inputs, Mapping) else list(inputs or []))]
        try:
            sess = session(model)
        except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
            raise VerifyError(f"ONNX Runtime cannot load the model: {_short(exc)}", where="verify") from exc
        names = [o.name for o in model.graph.output]
        half = {o.name for o in model.graph.output if o.type.tensor_type.elem_type in HALF_TYPES}
        tried: list[str] = []
        first_error: BaseException | None = None
        for size, b in _attempts(model, shapes, given, sizes, batch):
            resolved = resolve_shapes(model, shapes, given[0] if given else None, size=size, batch=b)
            sets = [InputSet(f"{'normal' if i % 2 == 0 else 'uniform'} seed {seed + i}",
                             random_inputs(model, seed + i, shapes=resolved.shapes,
                                           kind="normal" if i % 2 == 0 else "uniform"))
                    for i in range(samples)]
            for j, real in enumerate(given):
                feeds = random_inputs(model, seed + samples + j, shapes={**resolved.shapes,
                                                                         **{k: v.shape for k, v in real.items()}})
                feeds.update(real)
                sets.append(InputSet(f"given inputs {j}", feeds))
            try:
                for s in sets:
                    s.outputs = _run(sess, names, s.feeds)
            except Exception as exc:  # noqa: BLE001
                first_error = first_error or exc
                tried.append(_fmt_shapes(resolved.shapes))
                continue
            ref = cls(names, half, sets, resolved, tolerance or Tolerance(), tried)
            if drift:
                ref._measure_drift(sess, seed)
            return ref
        shown = "; ".join(tried[:3]) + (f"; and {len(tried) - 3} more" if len(tried) > 3 else "")
        raise VerifyError(f"ONNX Runtime fails on the model at every input shape tried ({shown}), so nothing can be "
                          "checked: give the shapes it runs at (--input-shape NAME:1x3x48x192) or real inputs "
                          f"(--inputs data.npz); its first error: {_short(first_error, 200)}", where="verify")

    def _measure_drift(self, sess: Any, seed: int) -> None:
        for i, s in enumerate(self.sets):
            moved = _run(sess, self.output_names, perturb_ulp(s.feeds, seed + 1000 + i))
            s.drift = {n: {k: e[k] for k in ("rel_l2", "max_abs")}
                       for n in self.output_names for e in [tensor_errors(s.outputs[n], moved[n])]}

    def shared_outputs(self, cand: onnx.ModelProto) -> list[str]:
        """The reference's outputs that `cand` has too, in the reference's order; VerifyError when there are none."""
        cand_names = {o.name for o in cand.graph.output}
        names = [n for n in self.output_names if n in cand_names]
        if not names:
            raise VerifyError("the models share no output to compare",
                              where=f"reference outputs {self.output_names}, candidate outputs {sorted(cand_names)}")
        return names

    def run(self, cand: onnx.ModelProto, names: list[str]) -> list[dict[str, np.ndarray]]:
        """`cand`'s outputs `names` on every input set, in ONNX Runtime (its exceptions pass through)."""
        sess = session(cand)
        return [_run(sess, names, s.feeds) for s in self.sets]

    def check(self, cand: onnx.ModelProto) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Errors of every output `cand` shares with the reference, each with its limit; and the violations (a
        candidate that fails to run is one). Raises VerifyError if it shares no output with the reference."""
        names = self.shared_outputs(cand)
        try:
            results = self.run(cand, names)
        except Exception as exc:  # noqa: BLE001 - the reference runs on these inputs: the change broke the model
            return {}, [f"the changed model fails in ONNX Runtime on inputs the original runs on: {_short(exc)}"]
        errors: dict[str, dict[str, Any]] = {}
        bad: list[str] = []
        for n in names:
            records = []
            for st, out in zip(self.sets, results):
                e = tensor_errors(st.outputs[n], out[n])
                drift = st.drift.get(n, {"rel_l2": 0.0, "max_abs": 0.0})
                lim_rel, lim_abs = self.tolerance.limits(drift, e["ref_max_abs"], n in self.half_outputs)
                records.append({**e, "drift_rel_l2": drift["rel_l2"], "drift_max_abs": drift["max_abs"],
                                "limit_rel_l2": lim_rel, "limit_max_abs": lim_abs, "inputs": st.label})
            if all(r["limit_rel_l2"] is None for r in records):  # no input set can check it: the cap is the limit
                for r in records:
                    r["limit_rel_l2"] = self.tolerance.cap
                    r["note"] = "no input set checks this output finer than the cap (its fp32 noise is larger)"
            for r in records:
                rel = r["rel_l2"] / r["limit_rel_l2"] if r["limit_rel_l2"] is not None else 0.0
                r["ratio"] = max(rel, r["max_abs"] / r["limit_max_abs"] if r["limit_max_abs"] != float("inf") else 0.0)
            worst = max(records, key=lambda r: r["ratio"])
            errors[n] = {**worst, "sets": [{k: r[k] for k in ("inputs", "rel_l2", "max_abs", "drift_rel_l2",
                                                              "limit_rel_l2", "limit_max_abs", "ratio")}
                                           for r in records]}
            if not worst["ratio"] <= 1.0:
                over = ("rel_l2", "limit_rel_l2") if worst["limit_rel_l2"] is not None and \
                    not worst["rel_l2"] <= worst["limit_rel_l2"] else ("max_abs", "limit_max_abs")
                bad.append(f"output '{n}': {over[0]} {worst[over[0]]:.3g} > {worst[over[1]]:.3g} on "
                           f"{worst['inputs']} (its drift {worst['drift_rel_l2']:.2g})")
        return errors, bad

    def drift_table(self) -> dict[str, dict[str, dict[str, float]]]:
        """Output → input set → the measured drift and the limits it gives (for optimize.json)."""
        table: dict[str, dict[str, dict[str, float]]] = {}
        for n in self.output_names:
            for s in self.sets:
                drift = s.drift.get(n, {"rel_l2": 0.0, "max_abs": 0.0})
                ref_max = _max_abs(s.outputs[n]) if s.outputs[n].dtype.kind == "f" else 0.0
                lim_rel, lim_abs = self.tolerance.limits(drift, ref_max, n in self.half_outputs)
                table.setdefault(n, {})[s.label] = {"drift_rel_l2": drift["rel_l2"],
                                                    "drift_max_abs": drift["max_abs"],
                                                    "limit_rel_l2": lim_rel, "limit_max_abs": lim_abs}
        return table

    def warnings(self) -> list[str]:
        """Outputs that no input set can check finer than the cap (random inputs that saturate them, say)."""
        out = []
        for n, per_set in self.drift_table().items():
            if all(v["limit_rel_l2"] is None for v in per_set.values()):
                worst = max(v["drift_rel_l2"] for v in per_set.values())
                out.append(f"output '{n}' moves by rel-L2 {worst:.2g} when the inputs move by one ulp, on every input "
                           f"set: rel-L2 checks it only to {self.tolerance.cap:g}; give representative inputs "
                           "(--inputs data.npz) to check it finely")
        return out


def _as_model_inputs(model: onnx.ModelProto, arrays: Feeds) -> dict[str, np.ndarray]:
    """Given inputs by name, in the model's dtypes (a float array is cast to the input's float type); UsageError for
    a name the model does not have or a dtype of another kind."""
    types = {vi.name: onnx.helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type)
             for vi in graph_inputs(model)}
    out = {}
    for name, value in arrays.items():
        value = np.asarray(value)
        if name not in types:
            raise UsageError(f"the given inputs have an array {name!r}, which is not an input of the model",
                             fix=f"name the arrays after the model's inputs: {', '.join(types)}")
        want = np.dtype(types[name])
        if value.dtype != want:
            if value.dtype.kind != want.kind or want.kind not in "f":
                raise UsageError(f"given input {name!r} is {value.dtype}, the model takes {want}",
                                 fix=f"save it as {want}")
            value = value.astype(want)
        out[name] = value
    return out


def _attempts(model: onnx.ModelProto, shapes: Mapping[str, Sequence[int]] | None, given: list[dict],
              sizes: Sequence[int], batch: int) -> list[tuple[int, int]]:
    """(size, batch) pairs to try: one when every dynamic dim has a given size, else each size with `batch` then 1."""
    probe = resolve_shapes(model, shapes, given[0] if given else None, size=sizes[0], batch=batch)
    if not any("chosen" in note for notes in probe.sources.values() for note in notes):
        return [(sizes[0], batch)]
    batch_chosen = any("batch, chosen" in note for notes in probe.sources.values() for note in notes)
    return [(s, b) for s in sizes for b in ((batch, 1) if batch_chosen and batch != 1 else (batch,))]


def _fmt_shapes(shapes: Mapping[str, Sequence[int]]) -> str:
    return ", ".join(f"{k}:{'x'.join(map(str, v))}" for k, v in shapes.items())


def compare_models(ref: onnx.ModelProto, cand: onnx.ModelProto, inputs: RealInputs = None, seed: int = 0,
                   samples: int = 2, dynamic_dim: int = 2) -> dict[str, dict[str, float]]:
    """Worst-case error of every output `cand` shares with `ref`: {name: {max_abs, rel_l2, ref_max_abs}} over
    `samples` seeded random input sets plus each given real set (missing names filled randomly). No drift is
    measured; `Reference` does that. Raises EdgeDeployError if the models share no output or a model fails."""
    reference = Reference.measure(ref, inputs, seed=seed, samples=samples, batch=dynamic_dim, drift=False,
                                  sizes=(dynamic_dim,))
    names = reference.shared_outputs(cand)
    try:
        results = reference.run(cand, names)
    except Exception as exc:  # noqa: BLE001
        raise VerifyError(f"ONNX Runtime fails on the changed model: {_short(exc)}", where="verify") from exc
    worst = {n: {"max_abs": 0.0, "rel_l2": 0.0, "ref_max_abs": 0.0} for n in names}
    for s, out in zip(reference.sets, results):
        for n in names:
            e = tensor_errors(s.outputs[n], out[n])
            for k in worst[n]:
                worst[n][k] = max(worst[n][k], e[k])
    return worst


def _run(sess: Any, names: list[str], feeds: Feeds) -> dict[str, np.ndarray]:
    wanted = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, {k: v for k, v in feeds.items() if k in wanted})))


def _short(exc: BaseException | None, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def violations(errors: Mapping[str, Mapping[str, float]], rel_l2: float, max_abs: float | None = None) -> list[str]:
    """Human-readable list of outputs over a fixed tolerance. `max_abs` is scaled by max(1, |reference|max) so it
    guards against a large local error that rel-L2 would average away, without tripping on large-valued outputs."""
    bad = []
    for name, e in errors.items():
        if not e["rel_l2"] <= rel_l2:
            bad.append(f"output '{name}': rel_l2 {e['rel_l2']:.3g} > {rel_l2:.3g}")
        elif max_abs is not None:
            guard = max_abs * max(1.0, e.get("ref_max_abs", 0.0))
            if not e["max_abs"] <= guard:
                bad.append(f"output '{name}': max_abs {e['max_abs']:.3g} > {guard:.3g}")
    return bad


Checker = Callable[[onnx.ModelProto], "tuple[dict[str, dict[str, Any]], list[str]]"]
