#!/usr/bin/env python
"""Batch-1 latency of the demo (or any config): PyTorch eager vs OpenVINO FP32 (f32 hint) vs OpenVINO INT8 (NNCF) vs
ONNX Runtime FP32 vs ONNX Runtime Q/DQ INT8, runs interleaved round by round, machine load recorded with each round.

    python tools/bench_int8.py                      # builds what it needs under --work (cached), then times
    python tools/bench_int8.py --rounds 7 --iters 200 --threads 2

The builds are ordinary `edgedeploy build --precision int8` runs (openvino and onnxruntime targets) into
<work>/openvino-int8 and <work>/onnxruntime-int8; an existing build is reused unless --rebuild.
Acceptance checked: OpenVINO INT8 at least 4x faster than PyTorch eager at batch 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedeploy import pipeline  # noqa: E402
from edgedeploy.config import demo_spec_path, load_spec  # noqa: E402
from edgedeploy.preprocess import load_validation_set  # noqa: E402
from edgedeploy.validate.latency import machine_load  # noqa: E402


def _build(spec, target: str, out: Path, rebuild: bool) -> Path:
    if rebuild or not (out / "report.json").is_file():
        lat = spec.validation.latency.model_copy(update={"warmup": 2, "iterations": 5, "batch_sizes": [1]})
        s = spec.model_copy(update={"target": target, "precision": "int8",
                                    "validation": spec.validation.model_copy(update={"latency": lat})})
        print(f"building {target} int8 into {out} ...", flush=True)
        pipeline.build(s, out)
    return out


class _Torch:
    def __init__(self, spec, threads: int):
        import torch

        from edgedeploy import export

        torch.set_num_threads(threads)
        self.torch = torch
        self.module = export.build_module(spec)
        self.name = spec.inputs[0].name

    def run(self, feeds):
        with self.torch.inference_mode():
            return self.module(self.torch.from_numpy(feeds[self.name]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", nargs="?", default=str(demo_spec_path()))
    ap.add_argument("--work", default="/tmp/edgedeploy-bench-int8")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    spec = load_spec(args.config)
    work = Path(args.work)
    ov_dir = _build(spec, "openvino", work / "openvino-int8", args.rebuild)
    ort_dir = _build(spec, "onnxruntime", work / "onnxruntime-int8", args.rebuild)

    import openvino as ov

    from edgedeploy.backends.onnxruntime import OnnxRuntimeRunner
    from edgedeploy.backends.openvino import OpenVINORunner

    fp32_xml = work / "openvino-fp32" / "model.xml"
    fp32_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.convert_model(str(ov_dir / "deploy.onnx")), str(fp32_xml), compress_to_fp16=False)
    t = args.threads
    runners = {
        "PyTorch eager fp32": _Torch(spec, t),
        "OpenVINO FP32 (f32 hint)": OpenVINORunner(fp32_xml, "CPU", "f32", t),
        "OpenVINO INT8 (NNCF)": OpenVINORunner(ov_dir / "openvino" / "model.xml", "CPU", "f32", t),
        "ORT FP32": OnnxRuntimeRunner(ort_dir / "deploy.onnx", t),
        "ORT Q/DQ INT8": OnnxRuntimeRunner(ort_dir / "deploy.int8.qdq.onnx", t),
    }
    data = load_validation_set(spec)
    feeds = {k: np.ascontiguousarray(v[:1]) for k, v in data.inputs.items()}
    for r in runners.values():
        for _ in range(args.warmup):
            r.run(feeds)

    per_round: dict[str, list[float]] = {k: [] for k in runners}
    loads = []
    for rnd in range(args.rounds):
        order = list(runners) if rnd % 2 == 0 else list(reversed(runners))  # interleaved, alternating order
        for name in order:
            runner = runners[name]
            loads.append(machine_load())
            times = np.empty(args.iters)
            for i in range(args.iters):
                s = time.perf_counter()
                runner.run(feeds)
                times[i] = time.perf_counter() - s
            per_round[name].append(float(np.median(times) * 1e3))
    base = float(np.median(per_round["PyTorch eager fp32"]))
    rows = []
    for name, meds in per_round.items():
        med = float(np.median(meds))
        rows.append({"runtime": name, "median_ms": med, "min_round_ms": min(meds), "max_round_ms": max(meds),
                     "speedup_vs_torch": base / med})
    load = [x for x in loads if x is not None]
    print(f"\nbatch 1, {t} threads, {args.rounds} interleaved rounds x {args.iters} calls; "
          f"1-min load per core during the run: min {min(load):.2f} / max {max(load):.2f}" if load else "")
    print("| runtime | median ms | best round ms | worst round ms | speed-up vs PyTorch eager |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['runtime']} | {r['median_ms']:.3f} | {r['min_round_ms']:.3f} | {r['max_round_ms']:.3f} | "
              f"{r['speedup_vs_torch']:.2f}x |")
    ov_int8 = next(r for r in rows if r["runtime"].startswith("OpenVINO INT8"))["speedup_vs_torch"]
    verdict = "MET" if ov_int8 >= 4 else "NOT MET"
    print(f"\nacceptance (OpenVINO INT8 >= 4x PyTorch eager at batch 1): {verdict} ({ov_int8:.2f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "loads": loads, "threads": t, "rounds": args.rounds,
                                               "iters": args.iters, "per_round_ms": per_round}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
