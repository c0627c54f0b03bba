#!/usr/bin/env python
"""One-command GPU self-check of the TensorRT backend on the bundled demo detector.

    python tools/trt_selfcheck.py --dry-run          # no GPU needed: the build plans for TensorRT 10 AND 11
    python tools/trt_selfcheck.py                    # on a CUDA machine with TensorRT (and torch, for the export)
    python tools/trt_selfcheck.py --precisions fp16 --out /tmp/selfcheck

On a GPU it builds the demo's FP32 / FP16 / INT8 engines through the pipeline (export → optimize → build →
validate against the PyTorch reference in reference.npz), compares INT8 with the ONNX Runtime run of the same Q/DQ
graph when that graph exists, times every engine with CUDA events (GPU compute, H2D/D2H, end to end) and, when
`trtexec` is on PATH, times trtexec on the same ONNX; then prints one table and writes selfcheck.json. INT8 also
runs the engine-level debugging paths: the Q/DQ graph built with every layer output marked and compared layer by
layer with ONNX Runtime fp32 (`edgedeploy debug precision --target trt`), and, where the int8 network is weakly typed
(TensorRT 8/10), a build with the worst layer held to fp32 by a per-layer precision constraint.
A precision the installed TensorRT cannot build yet (e.g. TensorRT 11 fp16 before the precision stage writes
deploy.fp16.onnx) is a `skipped` row with the reason; a failed build or check makes the exit code 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgedeploy.backends import trt_plan  # noqa: E402  (no TensorRT import)
from edgedeploy.config import BuildSpec, demo_spec_path, load_spec  # noqa: E402
from edgedeploy.errors import EdgeDeployError  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8")
MAJORS = (10, 11)


def dry_run(spec: BuildSpec, out_root: Path, precisions: tuple[str, ...]) -> int:
    """Print the build plan of every precision for TensorRT 10 and 11, from the config's inputs (no ONNX, no GPU)."""
    inputs = trt_plan.inputs_from_spec(spec.inputs)
    shapes = ", ".join(f"{i.name} [{', '.join(map(str, i.shape))}] {i.dtype}" for i in inputs)
    print(f"TensorRT build plans for {spec.name!r} (inputs: {shapes}); paths relative to {out_root}")
    refused = 0
    for major in MAJORS:
        settings = spec.tensorrt.model_copy(update={"plan_for_major": major})
        for precision in precisions:
            out_dir = out_root / f"{spec.name}-trt-{precision}" / "trt"
            print()
            try:
                plan = trt_plan.plan_build(inputs, settings, precision, out_dir)
            except EdgeDeployError as e:
                refused += 1
                print(f"TensorRT {major}.x · {precision}: refused: {e.message}")
                continue
            print(plan.describe_text(relative_to=out_root))
            print("  trtexec     " + " ".join(trt_plan.trtexec_command(plan)))
    return 0


# ---------------------------------------------------------------------------------------------------- GPU run

def _probe() -> tuple[Any, dict[str, Any]]:
    from edgedeploy.backends import tensorrt as trt_backend

    here = trt_backend.probe_runtime()
    if here["trt_version"] is None or here["gpu"] is None:
        raise EdgeDeployError(f"the self-check needs a CUDA GPU with TensorRT: {here['reason']}",
                              fix="run with --dry-run to see the build plans without a GPU")
    return trt_backend, here


def _ort_qdq_check(out: Path, outputs: dict, reference_inputs: dict) -> dict[str, Any] | None:
    """INT8: TensorRT's outputs against ONNX Runtime running the same Q/DQ graph on the CPU."""
    qdq = out / trt_plan.DEPLOY_ONNX["int8"]
    if not qdq.is_file():
        return None
    import numpy as np

    from edgedeploy.backends.onnxruntime import OnnxRuntimeRunner
    from edgedeploy.validate import metrics

    ort = OnnxRuntimeRunner(qdq)
    ort_out = ort.run({k: v for k, v in reference_inputs.items() if k in ort.input_names})
    return {name: metrics.compare(np.asarray(ort_out[name]), np.asarray(outputs[name]))
            for name in ort.output_names if name in outputs}


def bench_batches(plan: trt_plan.TrtBuildPlan, inputs: list[trt_plan.InputInfo]) -> tuple[int, ...]:
    """The batch sizes to time: the smallest and the largest the plan's profiles accept (1 and 8 by default), or the
    model's own batch when every input is static. A batch outside the profile cannot run, so none is hard-coded."""
    rng = trt_plan.batch_range(plan)
    if rng is None:
        first = inputs[0].shape[0] if inputs and inputs[0].shape else 1
        return (int(first),)
    return tuple(sorted({rng[0], rng[1]}))


def _trtexec(plan: trt_plan.TrtBuildPlan, batch: int, workdir: Path) -> dict[str, Any]:
    """trtexec on the same ONNX with the plan's flags and profiles, timed at `batch` (when the plan has profiles)."""
    from edgedeploy.backends.trt_timing import parse_trtexec

    exe = shutil.which("trtexec")
    if exe is None:
        return {"status": "not on PATH"}
    cmd = trt_plan.trtexec_command(plan, batch=batch if plan.profiles else None, trtexec=exe,
                                   engine_out=workdir / "trtexec.plan")
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"status": "timed out", "command": cmd}
    (workdir / "trtexec.log").write_text(run.stdout + run.stderr)
    parsed = parse_trtexec(run.stdout + run.stderr)
    return {"status": "ok" if run.returncode == 0 else f"exit {run.returncode}", "command": cmd, "batch": batch,
            **parsed}


def gpu_run(spec: BuildSpec, out_root: Path, precisions: tuple[str, ...], iterations: int) -> int:
    import numpy as np

    from edgedeploy import pipeline

    trt_backend, here = _probe()
    gpu = here["gpu"]
    print(f"TensorRT {here['trt_version']} on {gpu['name']} (compute capability {gpu['compute_capability']}, "
          f"CUDA driver {gpu.get('cuda_driver')})")
    rows = []
    for precision in precisions:
        out = out_root / f"{spec.name}-trt-{precision}"
        row: dict[str, Any] = {"precision": precision, "status": "?", "out": str(out)}
        rows.append(row)
        start = time.perf_counter()
        try:
            report = pipeline.build(spec.model_copy(update={"target": "trt", "precision": precision}), out)
        except EdgeDeployError as e:
            row.update(status="skipped" if e.exit_code == 2 or "does not exist yet" in e.message else "failed",
                       reason=e.message)
            print(f"  {precision}: {row['status']}: {e.message}")
            continue
        row["build_and_validate_s"] = round(time.perf_counter() - start, 1)
        row["status"] = "pass" if report["passed"] else "fail"
        row["rel_l2"] = max(m["rel_l2"] for m in report["tensors"].values())
        row["failed_checks"] = [c["name"] for c in report["checks"] if not c["passed"]]
        if report.get("task"):
            row["map50"] = report["task"]["map50"]
            row["reference_map50"] = report["task"]["reference_map50"]
        row["artifact"] = report["artifact"]
        plan = trt_backend.TensorRTBackend().plan(out / "deploy.onnx", out / "trt", precision, spec.tensorrt)
        batches = bench_batches(plan, trt_plan.inputs_from_spec(spec.inputs))
        ref = np.load(out / "reference.npz")
        inputs = {k.removeprefix("input."): ref[k] for k in ref.files if k.startswith("input.")}
        runner = trt_backend.load_plan(out / "trt" / trt_plan.PLAN_FILE)
        try:
            outputs = runner.run(inputs)
            qdq = _ort_qdq_check(out, outputs, inputs) if precision == "int8" else None
            if qdq is not None:
                row["vs_ort_qdq_rel_l2"] = max(m["rel_l2"] for m in qdq.values())
            row["bench"] = {}
            for batch in batches:
                feed = {k: np.ascontiguousarray(np.resize(v, (batch, *v.shape[1:]))) for k, v in inputs.items()}
                row["bench"][batch] = runner.benchmark(feed, warmup=max(10, iterations // 10), iterations=iterations)
            feed = {k: np.ascontiguousarray(np.resize(v, (batches[0], *v.shape[1:]))) for k, v in inputs.items()}
            # the Orin paths: spin-wait synchronization, and per-layer times through TensorRT's IProfiler
            row["bench_spin_wait"] = runner.benchmark(feed, warmup=max(10, iterations // 10), iterations=iterations,
                                                      spin_wait=True)
            row["bench_cuda_graph"] = runner.benchmark(feed, warmup=max(10, iterations // 10), iterations=iterations,
                                                       cuda_graph=True)
            row["layers"] = runner.profile_layers(feed, iterations=min(iterations, 20))
            row["output_allocator"] = list(runner.allocated)  # outputs sized during execution (IOutputAllocator)
        finally:
            runner.close()
        row["report_layer_profile"] = len((report.get("layer_profile") or {}).get("layers", []))
        if precision == "int8":
            from edgedeploy import precision_debug

            row["engine_debug"] = engine_debug(precision_debug.load_artifact(out, "trt"))
        row["trtexec"] = _trtexec(plan, batches[0], out / "trt")
        print(f"  {precision}: {row['status']}")
    print()
    print(format_table(rows, here))
    (out_root / "selfcheck.json").write_text(json.dumps({"tensorrt": here["trt_version"], "gpu": gpu, "rows": rows},
                                                        indent=2, default=str))
    print(f"\nwritten: {out_root / 'selfcheck.json'}")
    return 1 if any(r["status"] in ("fail", "failed") for r in rows) else 0


def engine_debug(art: Any, samples: int = 8) -> dict[str, Any]:
    """The engine-level debugging paths on an int8 TensorRT artifact (a precision_debug.Artifact): every layer output
    marked and compared with ONNX Runtime fp32, ranked (`debug precision --target trt`); then one trial of its
    `--search` with the worst layer kept in float: requantized without its Q/DQ and, on a weakly typed int8 network
    (TensorRT 8/10), held to fp32 by a per-layer precision constraint; built, run on the whole validation set and
    checked against the int8 budget."""
    from edgedeploy import precision_debug
    from edgedeploy.validate import localize

    layers = precision_debug.localize_artifact(art, samples)
    ranked = localize.rank(layers)
    out: dict[str, Any] = {"compared_layers": len(layers),
                           "worst": [{"layer": lay.layer, "local_rel_l2": lay.local_rel_l2, "rel_l2": lay.rel_l2}
                                     for lay in ranked[:5]]}
    if ranked:
        held = precision_debug.keep_in_float(art.spec, [ranked[0].layer], art.dir / "cache", art.trt_major)
        trial = precision_debug.run_trial(art, [ranked[0].layer], precision_debug.budget_for(art.spec, {}))
        out["trial"] = {"kept_float": trial.kept_float, "passed": trial.passed, "tensors": trial.tensors,
                        "layer_precisions": dict(held.tensorrt.layer_precisions), "seconds": round(trial.seconds, 1)}
    return out


def format_table(rows: list[dict[str, Any]], here: dict[str, Any]) -> str:
    def bench(row: dict, which: int) -> tuple[int, dict] | None:
        b = row.get("bench") or {}
        return sorted(b.items())[which] if b else None

    def ms(row: dict, which: int, field: str = "gpu_compute", stat: str = "median_ms") -> str:
        got = bench(row, which)
        return f"{got[1][field][stat]:.3f} @b{got[0]}" if got else "-"

    def tx(row: dict) -> str:
        t = row.get("trtexec") or {}
        return f"{t['gpu_compute']['median_ms']:.3f} @b{t['batch']}" if "gpu_compute" in t else t.get("status", "-")

    head = ["precision", "status", "rel-L2 vs PyTorch", "mAP@0.5 (ref)", "vs ORT Q/DQ", "GPU small-batch med/p99 ms",
            "e2e small-batch med ms", "GPU large-batch med ms", "trtexec GPU ms"]
    lines = [head]
    for r in rows:
        small = bench(r, 0)
        lines.append([
            r["precision"], r["status"],
            f"{r['rel_l2']:.2e}" if "rel_l2" in r else "-",
            f"{r['map50']:.4f} ({r['reference_map50']:.4f})" if "map50" in r else "-",
            f"{r['vs_ort_qdq_rel_l2']:.2e}" if "vs_ort_qdq_rel_l2" in r else "-",
            f"{ms(r, 0)} / {small[1]['gpu_compute']['p99_ms']:.3f}" if small else "-",
            ms(r, 0, "latency"), ms(r, -1), tx(r),
        ])
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    text = [f"TensorRT {here['trt_version']} · {here['gpu']['name']} (sm {here['gpu']['compute_capability']})"]
    for i, line in enumerate(lines):
        text.append("  ".join(str(c).ljust(w) for c, w in zip(line, widths)))
        if i == 0:
            text.append("  ".join("-" * w for w in widths))
    for r in rows:
        if r.get("reason"):
            text.append(f"{r['precision']}: {r['reason']}")
        if r.get("failed_checks"):
            text.append(f"{r['precision']}: failed checks {', '.join(r['failed_checks'])}")
        spin, small = r.get("bench_spin_wait"), bench(r, 0)
        if spin and small:
            text.append(f"{r['precision']}: batch {spin['batch']} host wall median "
                        f"{small[1]['host_wall']['median_ms']:.3f} ms blocking, "
                        f"{spin['host_wall']['median_ms']:.3f} ms spin-wait; enqueue median "
                        f"{small[1]['enqueue']['median_ms']:.3f} ms")
        graph = r.get("bench_cuda_graph")
        if graph:
            text.append(f"{r['precision']}: CUDA graph {graph['cuda_graph']}; GPU median "
                        f"{graph['gpu_compute']['median_ms']:.3f} ms, enqueue median "
                        f"{graph['enqueue']['median_ms']:.3f} ms")
        if r.get("layers"):
            top = ", ".join(f"{x['layer']} {x['median_ms']:.3f} ms ({x['share']:.0%})" for x in r["layers"][:3])
            text.append(f"{r['precision']}: slowest layers (IProfiler): {top}; in report.json: "
                        f"{r.get('report_layer_profile', 0)} layers")
        debug = r.get("engine_debug")
        if debug:
            worst = ", ".join(f"{x['layer']} {x['local_rel_l2'] or 0:.2e}" for x in debug["worst"][:3])
            text.append(f"{r['precision']}: engine layers compared with ONNX Runtime fp32: {debug['compared_layers']}; "
                        f"worst (local rel-L2): {worst}")
            trial = debug.get("trial")
            if trial:
                how = ("Q/DQ removed + per-layer fp32 constraint" if trial["layer_precisions"]
                       else "Q/DQ removed (strongly typed)")
                text.append(f"{r['precision']}: search trial, {', '.join(trial['kept_float'])} in float ({how}): "
                            f"{'pass' if trial['passed'] else 'fail'}; rel-L2 "
                            + ", ".join(f"{k} {v['rel_l2']:.2e}" for k, v in trial["tensors"].items()))
        for batch, stats in sorted((r.get("bench") or {}).items()):
            if stats["gpu_compute"]["unstable"]:
                text.append(f"{r['precision']}: batch {batch} GPU compute time is unstable "
                            f"(CoV {stats['gpu_compute']['cov']:.1%})")
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="print the TensorRT 10 and 11 build plans; no GPU")
    parser.add_argument("--config", type=Path, default=None, help="build spec (default: the bundled demo)")
    parser.add_argument("--out", type=Path, default=Path("edgedeploy-out/trt-selfcheck"), help="output folder")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated, default all")
    parser.add_argument("--iterations", type=int, default=200, help="timed runs per batch size")
    args = parser.parse_args(argv)
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    bad = [p for p in precisions if p not in PRECISIONS]
    try:
        if bad:
            raise EdgeDeployError(f"unknown precision(s) {bad}", fix=f"use {', '.join(PRECISIONS)}", exit_code=2)
        spec = load_spec(args.config or demo_spec_path())
        if args.dry_run:
            return dry_run(spec, args.out, precisions)
        args.out.mkdir(parents=True, exist_ok=True)
        return gpu_run(spec, args.out, precisions, args.iterations)
    except EdgeDeployError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
