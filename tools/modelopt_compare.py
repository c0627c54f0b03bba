#!/usr/bin/env python
"""NVIDIA ModelOpt's ONNX PTQ (modelopt.onnx.quantization, calibrated with ONNX Runtime on the CPU) against
edgedeploy's own TensorRT-flavour Q/DQ (the precision stage: NNCF on the ONNX model), on one built folder.

    pip install --target /tmp/mo --no-deps nvidia-modelopt onnx_graphsurgeon onnxconverter-common polygraphy \
        tqdm cppimport pulp lief omegaconf nvidia-ml-py        # ModelOpt without its CUDA/torch wheels
    PYTHONPATH=/tmp/mo:. python tools/modelopt_compare.py /tmp/demo-int8 --calibrate 200

Both quantize the folder's deploy.onnx from the same calibration samples (the first --calibrate inputs of its
reference.npz), and both Q/DQ graphs run on ONNX Runtime's CPU provider over the held-out rest: the table gives each
one's rel-L2 against the fp32 graph's outputs there, and where each put Q/DQ relative to TensorRT's fusion rules
(an Add fuses into the conv before it when both inputs are dequantized; Concat and MaxPool run int8 when their
inputs are). Prints a table; --json keeps it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from edgedeploy.config import load_spec
from edgedeploy.precision import qdq
from edgedeploy.precision.calibration import CalibrationSet


def run(path: Path, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    count = len(next(iter(inputs.values())))
    outs = [session.run(names, {k: v[i:i + 1] for k, v in inputs.items()}) for i in range(count)]
    return {n: np.concatenate([o[j] for o in outs]) for j, n in enumerate(names)}


def rel_l2(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm((a - b).ravel()) / max(np.linalg.norm(b.ravel()), 1e-12))


def placement(path: Path) -> dict[str, object]:
    """Q/DQ counts and, for the ops TensorRT fuses or runs int8 from Q/DQ, how many have dequantized inputs."""
    graph = onnx.load(str(path)).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}

    def dq_inputs(node: onnx.NodeProto) -> int:
        return sum(producer.get(i) == "DequantizeLinear" for i in node.input if i)

    out: dict[str, object] = {"QuantizeLinear": sum(n.op_type == "QuantizeLinear" for n in graph.node)}
    for op, need in (("Add", 2), ("Concat", None), ("MaxPool", 1)):
        nodes = [n for n in graph.node if n.op_type == op]
        full = sum(dq_inputs(n) >= (need or len([i for i in n.input if i])) for n in nodes)
        out[op] = f"{full}/{len(nodes)}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a build folder with deploy.onnx and reference.npz")
    parser.add_argument("--config", type=Path, default=Path("edgedeploy/demo/demo.yaml"), help="its build spec")
    parser.add_argument("--calibrate", type=int, default=200, help="samples to calibrate on; the rest evaluate")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        from modelopt.onnx.quantization import quantize
    except ImportError as e:
        print(f"error: ModelOpt is not importable ({e}); see this script's docstring", file=sys.stderr)
        return 1
    deploy = args.folder / "deploy.onnx"
    ref = np.load(args.folder / "reference.npz")
    inputs = {k.removeprefix("input."): ref[k] for k in ref.files if k.startswith("input.")}
    calib_inputs = {k: v[:args.calibrate] for k, v in inputs.items()}
    held_out = {k: v[args.calibrate:] for k, v in inputs.items()}
    spec = load_spec(args.config)
    calib = CalibrationSet(samples=[{k: v[i:i + 1] for k, v in calib_inputs.items()} for i in range(args.calibrate)],
                           ids=[f"reference.npz[{i}]" for i in range(args.calibrate)], sha256="", source="reference.npz",
                           format="npz", candidates=args.calibrate, seed=0, seconds=0.0)
    fp32 = run(deploy, held_out)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        candidates = {}
        start = time.perf_counter()
        qdq.quantize_nncf(deploy, Path(tmp) / "ours.onnx", calib, spec.int8)
        candidates["edgedeploy (NNCF, tensorrt flavour)"] = (Path(tmp) / "ours.onnx", time.perf_counter() - start)
        for method in ("max", "entropy"):
            out = Path(tmp) / f"modelopt-{method}.onnx"
            start = time.perf_counter()
            quantize(str(deploy), quantize_mode="int8", calibration_data=calib_inputs, calibration_method=method,
                     calibration_eps=["cpu"], output_path=str(out), log_level="ERROR")
            candidates[f"ModelOpt int8 ({method}, ORT CPU)"] = (out, time.perf_counter() - start)
        for name, (path, seconds) in candidates.items():
            outs = run(path, held_out)
            rows.append({"producer": name, "seconds": f"{seconds:.1f}",
                         **{f"rel_l2[{k}]": rel_l2(outs[k], fp32[k]) for k in fp32}, **placement(path)})
    keys = list(rows[0])
    widths = [max(len(k), *(len(f"{r[k]:.3e}" if isinstance(r[k], float) else str(r[k])) for r in rows))
              for k in keys]
    fmt = lambda v: f"{v:.3e}" if isinstance(v, float) else str(v)  # noqa: E731
    print(f"{args.folder}: calibrated on {args.calibrate} samples, evaluated on {len(next(iter(held_out.values())))}"
          f" held-out samples (ONNX Runtime CPU, rel-L2 vs the fp32 graph)")
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for r in rows:
        print("  ".join(fmt(r[k]).ljust(w) for k, w in zip(keys, widths)))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
