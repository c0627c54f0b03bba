#!/usr/bin/env python
"""Box and score error of detector builds vs their PyTorch reference: rel-L2 of the box columns (x, y, w, h) and of
the rest (objectness / class scores) of the first (N, boxes, 4 + k) or (N, 4 + k, boxes) output, on the build's
validation inputs (reference.npz) (OpenVINO with the f32 hint, ONNX Runtime on CPU).

    python tools/box_error.py BUILD_DIR [BUILD_DIR ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def run(build: Path, x: np.ndarray) -> np.ndarray:
    report = json.loads((build / "report.json").read_text())
    artifact = build / report["artifact"]["path"]
    if artifact.suffix == ".xml":
        import openvino as ov

        compiled = ov.Core().compile_model(str(artifact), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        static = compiled.inputs[0].get_partial_shape()[0].is_static
        step = compiled.inputs[0].get_partial_shape()[0].get_length() if static else 8
        run_one = lambda b: compiled(b)[0]  # noqa: E731
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        dim = session.get_inputs()[0].shape[0]
        step = dim if isinstance(dim, int) else 8
        run_one = lambda b: session.run(None, {session.get_inputs()[0].name: b})[0]  # noqa: E731
    out = []
    for i in range(0, len(x), step):
        chunk = x[i:i + step]
        pad = np.concatenate([chunk] * step)[:step] if len(chunk) < step else chunk
        out.append(np.asarray(run_one(np.ascontiguousarray(pad)))[:len(chunk)])
    return np.concatenate(out)


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def box_score_error(got: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Boxes are the first 4 of the short axis of a (N, boxes, 4 + k) or (N, 4 + k, boxes) output."""
    axis = -1 if ref.shape[-1] < ref.shape[1] else 1
    box = np.take(ref, range(4), axis=axis), np.take(got, range(4), axis=axis)
    rest = np.take(ref, range(4, ref.shape[axis]), axis=axis), np.take(got, range(4, ref.shape[axis]), axis=axis)
    return {"box_rel_l2": rel_l2(box[1], box[0]), "score_rel_l2": rel_l2(rest[1], rest[0])}


def main() -> None:
    for build in map(Path, sys.argv[1:]):
        with np.load(build / "reference.npz") as ref:  # the validation inputs and PyTorch's outputs on them
            x = next(ref[k] for k in ref.files if k.startswith("input."))
            reference = next(ref[k] for k in ref.files if k.startswith("output."))
        print(build, json.dumps(box_score_error(run(build, x), reference)))


if __name__ == "__main__":
    main()
