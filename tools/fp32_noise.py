"""How far an fp32 artifact's outputs move from the PyTorch reference by backend noise alone, to set fp32 budgets.

For each model (the demo detector, a MobileNetV2-like and a deep ResNet-like classifier, edgedeploy.demo.zoo), one
`edgedeploy build` (ONNX Runtime fp32) writes deploy.onnx and reference.npz; then the *same* deploy graph runs on
ONNX Runtime and on OpenVINO (IR, INFERENCE_PRECISION_HINT f32) in every combination of threads, batch size and
kernel choice (ONNX Runtime graph optimization level; OpenVINO LATENCY/THROUGHPUT hint and dynamic/static shapes;
and, each in a fresh process, the kernels of an AVX2-only CPU via oneDNN's ONEDNN_MAX_CPU_ISA and PyTorch's
ATEN_CPU_CAPABILITY), each configuration `--repeats` times, and rel-L2 against the reference is computed as the gate computes it
(edgedeploy.validate.metrics.compare). PyTorch itself at 1 thread is a row too: the reference has noise of its own.

    python tools/fp32_noise.py --work out/fp32-noise            # all three models, ~10 min on 2 cores
    python tools/fp32_noise.py --models demo --repeats 2

Prints one row per model × backend (min / median / max rel-L2 over configurations, largest run-to-run change of one
configuration) and the configuration of the worst; writes every figure to WORK/fp32-noise.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgedeploy import pipeline  # noqa: E402
from edgedeploy.config import BuildSpec, Thresholds, demo_spec_path, load_spec  # noqa: E402
from edgedeploy.validate.metrics import compare  # noqa: E402

_CLASSIFIERS = {"mobilenet": ("edgedeploy.demo.zoo:mobilenet_v2_like", 224),
                "resnet": ("edgedeploy.demo.zoo:resnet_like", 160)}


def _images(size: int, count: int) -> np.ndarray:
    """Real-looking uint8 images: the demo's held-out digit scenes, resized."""
    from PIL import Image

    with np.load(demo_spec_path().parent / "eval.npz") as data:
        small = data["images"][:count]
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in small])


def spec_for(model: str, work: Path, samples: int) -> BuildSpec:
    latency = {"batch_sizes": [1], "warmup": 1, "iterations": 3, "async_requests": 0}
    if model == "demo":
        spec = load_spec(demo_spec_path())
        validation = spec.validation.model_copy(update={"samples": samples, "latency": spec.validation.latency
                                                        .model_copy(update=latency)})
        return spec.model_copy(update={"validation": validation, "target": "onnxruntime",
                                       "thresholds": {"fp32": Thresholds(max_rel_l2=1.0)}})
    factory, size = _CLASSIFIERS[model]
    data = work / f"{model}-val.npz"
    if not data.exists():
        np.savez(data, images=_images(size, samples), labels=np.zeros(samples, np.int64))
    return BuildSpec.model_validate({
        "name": model, "model": {"factory": factory},
        "inputs": [{"name": "images", "shape": ["batch", 3, size, size]}], "outputs": ["logits"],
        "preprocess": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
        "validation": {"data": str(data), "task": "classification", "latency": latency},
        "thresholds": {"fp32": {"max_rel_l2": 1.0}}, "target": "onnxruntime"})


def _batches(inputs: dict[str, np.ndarray], batch: int):
    n = len(next(iter(inputs.values())))
    for s in range(0, n, batch):
        yield {k: v[s:s + batch] for k, v in inputs.items()}


def _run(fn, inputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    parts: dict[str, list] = {}
    for feeds in _batches(inputs, batch):
        for k, v in fn(feeds).items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in parts.items()}


def ort_configs(path: Path, batches: list[int]):
    import onnxruntime as ort

    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    for threads, level in itertools.product((1, 2), levels):
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        for batch in batches:
            yield (f"threads {threads}, opt {level}, batch {batch}",
                   lambda feeds, s=session, n=names: dict(zip(n, s.run(n, feeds))), batch)


def ov_configs(xml: Path, batches: list[int], input_name: str):
    import openvino as ov

    core = ov.Core()
    for threads, hint, static in itertools.product((1, 2), ("LATENCY", "THROUGHPUT"), (False, True)):
        compiled = None
        for batch in batches:
            if static or compiled is None:  # one dynamic-shape compile serves every batch size
                model = core.read_model(str(xml))
                if static:
                    dims = list(model.input(input_name).get_partial_shape())
                    model.reshape({input_name: [batch] + [d.get_length() for d in dims[1:]]})
                compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                             "PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": threads})
            request = compiled.create_infer_request()
            names = [o.get_any_name() for o in compiled.outputs]
            effective = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()
            yield (f"threads {threads}, {hint}, {'static' if static else 'dynamic'} shape, batch {batch} "
                   f"(hint {effective})",
                   lambda feeds, r=request, n=names: {k: np.array(v) for k, v in zip(n, r.infer(feeds).values())},
                   batch)


def measure(model: str, work: Path, samples: int, repeats: int) -> dict:
    import openvino as ov

    out = work / model
    spec = spec_for(model, work, samples)
    if not (out / "deploy.onnx").exists():
        pipeline.build(spec, out)
    with np.load(out / "reference.npz") as data:
        inputs = {k[6:]: data[k] for k in data.files if k.startswith("input.")}
        reference = {k[7:]: data[k] for k in data.files if k.startswith("output.")}
    n = len(next(iter(inputs.values())))
    batches = sorted({1, 8, n})
    xml = work / f"{model}-ir" / "model.xml"
    if not xml.exists():
        xml.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(ov.convert_model(str(out / "deploy.onnx")), str(xml), compress_to_fp16=False)
    rows: dict[str, list[dict]] = {"onnxruntime": [], "openvino": [], "torch": []}
    for backend, configs in (("onnxruntime", ort_configs(out / "deploy.onnx", batches)),
                             ("openvino", ov_configs(xml, batches, next(iter(inputs))))):
        for label, fn, batch in configs:
            runs = [max(compare(reference[k], v)["rel_l2"] for k, v in _run(fn, inputs, batch).items()
                        if k in reference) for _ in range(repeats)]
            rows[backend].append({"config": label, "rel_l2": runs})
            print(f"  {model:9} {backend:11} {label:58} " + " ".join(f"{r:.3e}" for r in runs), flush=True)
    rows["torch"] = _torch_rows(spec, inputs, reference)
    return rows


def _torch_rows(spec: BuildSpec, inputs: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> list[dict]:
    """PyTorch eager at 1 thread and at every core vs the stored reference (computed at build time)."""
    import torch

    from edgedeploy import export

    module = export.build_module(spec)
    names = list(reference)
    rows = []
    before = torch.get_num_threads()
    for threads in (1, os.cpu_count() or 1):
        torch.set_num_threads(threads)
        outs = export.reference_outputs(module, inputs, names)
        rows.append({"config": f"threads {threads}",
                     "rel_l2": [max(compare(reference[k], outs[k])["rel_l2"] for k in names)]})
    torch.set_num_threads(before)
    return rows


_ISAS = {"openvino": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
         "torch": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}}  # torch's convs are oneDNN's


def probe(model: str, work: Path, backend: str) -> float:
    """rel-L2 vs the stored reference of one run in this process (OpenVINO 2 threads, or PyTorch eager)."""
    out = work / model
    with np.load(out / "reference.npz") as data:
        inputs = {k[6:]: data[k] for k in data.files if k.startswith("input.")}
        reference = {k[7:]: data[k] for k in data.files if k.startswith("output.")}
    if backend == "openvino":
        _, fn, batch = next(ov_configs(work / f"{model}-ir" / "model.xml", [8], next(iter(inputs))))
        outs = _run(fn, inputs, batch)
    else:
        from edgedeploy import export

        spec = BuildSpec.model_validate(json.loads((out / "manifest.json").read_text())["spec"])
        outs = export.reference_outputs(export.build_module(spec), inputs, list(reference))
    return max(compare(reference[k], outs[k])["rel_l2"] for k in reference)


def isa_rows(model: str, work: Path) -> dict[str, list[dict]]:
    """The same artifact (and PyTorch) on narrower kernels: AVX2 instead of what this CPU has (an AVX2-only CI
    runner or edge box picks these), each in a fresh process with the ISA capped by the library's own variable."""
    import subprocess

    rows: dict[str, list[dict]] = {}
    for backend, caps in _ISAS.items():
        for capped in (False, True):
            env = {k: v for k, v in os.environ.items() if k not in caps} | (caps if capped else {})
            done = subprocess.run([sys.executable, __file__, "--work", str(work), "--probe", f"{model}:{backend}"],
                                  capture_output=True, text=True, env=env, check=True)
            value = float(done.stdout.strip().splitlines()[-1])
            label = " ".join(f"{k}={v}" for k, v in caps.items()) if capped else "this CPU's widest kernels"
            rows.setdefault(backend, []).append({"config": label, "rel_l2": [value]})
            print(f"  {model:9} {backend:11} {rows[backend][-1]['config']:58} {value:.3e}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("out/fp32-noise"))
    parser.add_argument("--models", default="demo,mobilenet,resnet")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--probe", help=argparse.SUPPRESS)  # MODEL:BACKEND, one run in this process (isa_rows)
    args = parser.parse_args()
    if args.probe:
        model, backend = args.probe.split(":")
        print(probe(model, args.work, backend))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    results = {}
    for model in args.models.split(","):
        results[model] = measure(model, args.work, args.samples, args.repeats)
        for backend, rows in isa_rows(model, args.work).items():
            results[model].setdefault(f"{backend} (ISA)", rows)
    print(f"\n{'model':10} {'backend':12} {'configs':>7} {'min':>10} {'median':>10} {'max':>10} {'run-to-run':>10}  worst")
    for model, per_backend in results.items():
        for backend, rows in per_backend.items():
            values = [v for r in rows for v in r["rel_l2"]]
            spread = max(max(r["rel_l2"]) - min(r["rel_l2"]) for r in rows)
            worst = max(rows, key=lambda r: max(r["rel_l2"]))
            print(f"{model:10} {backend:12} {len(rows):7} {min(values):10.3e} {float(np.median(values)):10.3e} "
                  f"{max(values):10.3e} {spread:10.3e}  {worst['config']}")
    (args.work / "fp32-noise.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
