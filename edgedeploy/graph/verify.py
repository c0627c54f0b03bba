"""Check that two ONNX models compute the same thing, by running both in ONNX Runtime on the same inputs.

Graph optimizations are disabled in the sessions so that ORT's own fusions (which fold BatchNormalization, for one)
cannot hide a difference between the graphs. Inputs are seeded random tensors built from the reference model's input
types and shapes (dynamic dims take `dynamic_dim`), plus any real inputs the caller gives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from edgedeploy.errors import EdgeDeployError, UsageError

TINY = np.finfo(np.float64).tiny
Feeds = Mapping[str, np.ndarray]


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """Real inputs: graph inputs that are not initializers (old models list their weights as inputs too)."""
    inits = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def random_inputs(model: onnx.ModelProto, seed: int = 0, dynamic_dim: int = 2) -> dict[str, np.ndarray]:
    """Seeded random feeds: floats ~ N(0, 1), integers in [0, 4), booleans fair coin; dynamic dims = dynamic_dim."""
    rng = np.random.default_rng(seed)
    feeds: dict[str, np.ndarray] = {}
    for vi in graph_inputs(model):
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tt.HasField("shape"):
            raise UsageError(
                "graph input has no static rank, so random test inputs cannot be built",
                where=f"input '{vi.name}'",
                fix="Give real inputs for verification",
            )
        shape = [d.dim_value if d.HasField("dim_value") else dynamic_dim for d in tt.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[vi.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[vi.name] = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            feeds[vi.name] = rng.integers(0, 4, size=shape).astype(dtype)
        else:
            raise UsageError(
                f"graph input of type {onnx.TensorProto.DataType.Name(tt.elem_type)} cannot be generated",
                where=f"input '{vi.name}'",
                fix="Give real inputs for verification",
            )
    return feeds


def session(model: onnx.ModelProto):
    """An ONNX Runtime CPU session with all graph optimizations off."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def run(model: onnx.ModelProto, feeds: Feeds, outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Run `model` once in ORT (optimizations off) and return its outputs by name."""
    sess = session(model)
    names = list(outputs) if outputs is not None else [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    values = sess.run(names, {k: v for k, v in feeds.items() if k in wanted})
    return dict(zip(names, values))


def tensor_errors(ref: np.ndarray, cand: np.ndarray) -> dict[str, float]:
    """max_abs and rel_l2 = ||ref − cand||₂ / max(||ref||₂, tiny); matching NaN/±inf count as equal."""
    a = np.asarray(ref)
    b = np.asarray(cand)
    if a.shape != b.shape:
        return {"max_abs": float("inf"), "rel_l2": float("inf"), "ref_max_abs": _max_abs(a)}
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if np.any(~np.isfinite(a) & ~same) or np.any(~np.isfinite(b) & ~same):
        return {"max_abs": float("inf"), "rel_l2": float("inf"), "ref_max_abs": _max_abs(a)}
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, a - b)
    a_fin = np.where(np.isfinite(a), a, 0.0)
    max_abs = float(np.max(np.abs(diff))) if diff.size else 0.0
    rel = float(np.linalg.norm(diff.ravel()) / max(float(np.linalg.norm(a_fin.ravel())), TINY))
    return {"max_abs": max_abs, "rel_l2": rel, "ref_max_abs": _max_abs(a_fin)}


def _max_abs(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    a = a[np.isfinite(a)]
    return float(np.max(np.abs(a))) if a.size else 0.0


def compare_models(
    ref: onnx.ModelProto,
    cand: onnx.ModelProto,
    inputs: Feeds | Sequence[Feeds] | None = None,
    seed: int = 0,
    samples: int = 2,
    dynamic_dim: int = 2,
) -> dict[str, dict[str, float]]:
    """Worst-case error of every output `cand` shares with `ref`: {name: {max_abs, rel_l2, ref_max_abs}}.

    Runs `samples` seeded random input sets plus each given real input set (missing names are filled randomly).
    Raises EdgeDeployError if the models share no output or a model fails to run.
    """
    ref_out = [o.name for o in ref.graph.output]
    cand_names = {o.name for o in cand.graph.output}
    names = [n for n in ref_out if n in cand_names]
    if not names:
        raise EdgeDeployError(
            "the models share no output to compare",
            where=f"reference outputs {ref_out}, candidate outputs {sorted(cand_names)}",
        )
    feeds_list: list[dict[str, np.ndarray]] = [random_inputs(ref, seed + i, dynamic_dim) for i in range(samples)]
    if inputs is not None:
        given = [inputs] if isinstance(inputs, Mapping) else list(inputs)
        for j, real in enumerate(given):
            feeds = random_inputs(ref, seed + samples + j, dynamic_dim)
            feeds.update({k: np.asarray(v) for k, v in real.items()})
            feeds_list.append(feeds)
    try:
        ref_sess, cand_sess = session(ref), session(cand)
    except Exception as exc:  # noqa: BLE001 - ORT raises several unrelated types
        raise EdgeDeployError(f"ONNX Runtime cannot load the model: {_short(exc)}", where="verify") from exc
    worst: dict[str, dict[str, float]] = {n: {"max_abs": 0.0, "rel_l2": 0.0, "ref_max_abs": 0.0} for n in names}
    for feeds in feeds_list:
        try:
            r = _run(ref_sess, names, feeds)
        except Exception as exc:  # noqa: BLE001
            raise EdgeDeployError(f"ONNX Runtime fails on the reference model: {_short(exc)}", where="verify") from exc
        try:
            c = _run(cand_sess, names, feeds)
        except Exception as exc:  # noqa: BLE001
            raise EdgeDeployError(f"ONNX Runtime fails on the changed model: {_short(exc)}", where="verify") from exc
        for n in names:
            e = tensor_errors(r[n], c[n])
            for k in worst[n]:
                worst[n][k] = max(worst[n][k], e[k])
    return worst


def _run(sess: Any, names: list[str], feeds: Feeds) -> dict[str, np.ndarray]:
    wanted = {i.name for i in sess.get_inputs()}
    return dict(zip(names, sess.run(names, {k: v for k, v in feeds.items() if k in wanted})))


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def violations(
    errors: Mapping[str, Mapping[str, float]],
    rel_l2: float,
    max_abs: float | None = None,
) -> list[str]:
    """Human-readable list of outputs over tolerance. `max_abs` is scaled by max(1, |reference|max) so it guards
    against a large local error that rel-L2 would average away, without tripping on large-valued outputs."""
    bad = []
    for name, e in errors.items():
        if not e["rel_l2"] <= rel_l2:
            bad.append(f"output '{name}': rel_l2 {e['rel_l2']:.3g} > {rel_l2:.3g}")
        elif max_abs is not None:
            guard = max_abs * max(1.0, e.get("ref_max_abs", 0.0))
            if not e["max_abs"] <= guard:
                bad.append(f"output '{name}': max_abs {e['max_abs']:.3g} > {guard:.3g}")
    return bad
