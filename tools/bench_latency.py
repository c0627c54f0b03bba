#!/usr/bin/env python
"""Cross-check edgedeploy's latency harness against OpenVINO's benchmark_app on the same IR and settings.

Runs, interleaved for `--rounds` rounds (so drifting outside load hits both alike):
  - edgedeploy: OpenVINORunner (PERFORMANCE_HINT=LATENCY → 1 stream, INFERENCE_NUM_THREADS, precision hint f32)
    timed by edgedeploy.validate.latency.measure_sync with a time budget;
  - benchmark_app -m model.xml -d CPU -load_config CONFIG.json -api sync -data_shape NAME[B,...] -t SECONDS, where
    CONFIG.json holds exactly the runner's compile properties (OpenVINORunner.compile_config: LATENCY hint, N
    threads, f32), so both run the same plugin setup (its own timing, in C++, excludes the Python call). `-data_shape` keeps the
    IR's dynamic batch, as edgedeploy's runner does; `-shape` would reshape the model to a static batch first, which
    compiles different (faster) kernels — `--also-static` adds that run per round for comparison, outside the diff.
Prints a Markdown table (median / mean / min / max per run, load) and the difference of the medians of the medians,
for the harness's two figures of the same calls: the Python call (`edgedeploy`) and OpenVINO's own timer
(`edgedeploy-own`, InferRequest.latency), which like benchmark_app's excludes the cost of calling from Python.

    python tools/bench_latency.py ARTIFACT_DIR_OR_XML --batch 8 --threads 2 --seconds 15 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgedeploy.backends.openvino import OpenVINORunner
from edgedeploy.validate import latency


def _xml(path: Path) -> Path:
    if path.is_dir():
        found = sorted(path.glob("**/model.xml"))
        if not found:
            sys.exit(f"no model.xml under {path}")
        return found[0]
    return path


def _input_shape(xml: Path, batch: int) -> tuple[str, list[int]]:
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    if len(model.inputs) != 1:
        sys.exit("this tool benchmarks single-input models")
    port = model.inputs[0]
    dims = [batch if i == 0 else d.get_length() for i, d in enumerate(port.get_partial_shape())]
    return port.get_any_name(), dims


def run_harness(xml: Path, name: str, shape: list[int], threads: int, seconds: float) -> dict:
    runner = OpenVINORunner(xml, "CPU", "f32", threads)
    feeds = {name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    t = latency.measure_sync(runner, feeds, warmup=20, iterations=None, duration_s=seconds)
    own = t["backend_timing"]
    return {"tool": "edgedeploy", "median_ms": t["median_ms"], "mean_ms": t["mean_ms"], "min_ms": t["min_ms"],
            "max_ms": t["max_ms"], "count": t["iterations"], "cov": t["cov"], "load": t["load_per_core"],
            "others_cpu": t["other_cpu_busy"], "streams": int(runner.compiled.get_property("NUM_STREAMS")),
            "effective_hint": runner.conditions["precision_hint_effective"],
            "own": {k: own[k] for k in ("median_ms", "mean_ms", "min_ms", "max_ms")}}


_BA_FIELDS = {"Median": "median_ms", "Average": "mean_ms", "Min": "min_ms", "Max": "max_ms"}


def run_benchmark_app(xml: Path, name: str, shape: list[int], threads: int, seconds: float,
                      static: bool = False) -> dict:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    config = Path(tempfile.mkdtemp()) / "config.json"  # the runner's own compile properties
    config.write_text(json.dumps({"CPU": {k: str(v) for k, v in OpenVINORunner.compile_config("f32", threads).items()}}))
    cmd = [exe, "-m", str(xml), "-d", "CPU", "-load_config", str(config), "-api", "sync",
           "-shape" if static else "-data_shape", f"{name}[{','.join(map(str, shape))}]", "-t", str(int(seconds))]
    load = latency.machine_load()
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    except subprocess.CalledProcessError as e:
        sys.exit(f"benchmark_app failed:\n{(e.stdout or '')[-1500:]}{(e.stderr or '')[-1500:]}")
    finally:
        shutil.rmtree(config.parent, ignore_errors=True)
    result: dict = {"tool": "benchmark_app-static" if static else "benchmark_app", "load": load,
                    "cmd": " ".join(cmd[1:])}
    section = out.split("Latency:", 1)[-1]
    for label, key in _BA_FIELDS.items():
        m = re.search(rf"{label}:\s+([\d.]+)\s*(ms|us)", section)
        if m is None:
            sys.exit(f"cannot find the {label} latency in benchmark_app's output:\n{out[-2000:]}")
        result[key] = float(m.group(1)) / (1000.0 if m.group(2) == "us" else 1.0)
    m = re.search(r"Count:\s+(\d+)", out)
    result["count"] = int(m.group(1)) if m else None
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path, help="model.xml or a folder holding one")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, help="also write every run here")
    ap.add_argument("--also-static", action="store_true",
                    help="add a benchmark_app run with -shape (static batch) per round, for comparison")
    args = ap.parse_args()

    xml = _xml(args.model)
    name, shape = _input_shape(xml, args.batch)
    runs = []
    for r in range(args.rounds):
        order = [run_harness, run_benchmark_app] if r % 2 == 0 else [run_benchmark_app, run_harness]
        if args.also_static:
            order.append(lambda *a: run_benchmark_app(*a, static=True))
        for fn in order:
            res = fn(xml, name, shape, args.threads, args.seconds)
            res["round"] = r + 1
            runs.append(res)
            print(f"round {r + 1} {res['tool']:<13} median {res['median_ms']:.4f} ms", file=sys.stderr)
            if "own" in res:  # the same calls as timed by OpenVINO itself (no Python call overhead)
                runs.append({**res, **res.pop("own"), "tool": "edgedeploy-own"})

    print(f"\n{xml}, input {name}{shape}, {args.threads} threads, 1 stream, f32, sync, {args.seconds:g} s per run\n")
    print(f"benchmark_app {next(r for r in runs if r['tool'] == 'benchmark_app')['cmd']}\n")
    print("| round | tool | median ms | mean ms | min ms | max ms | count | load/core |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['round']} | {r['tool']} | {r['median_ms']:.4f} | {r['mean_ms']:.4f} | {r['min_ms']:.4f} | "
              f"{r['max_ms']:.4f} | {r['count']} | {r['load']:.2f} |")
    med = {tool: statistics.median(r["median_ms"] for r in runs if r["tool"] == tool)
           for tool in sorted({r["tool"] for r in runs})}
    summary = {}
    for tool, what in (("edgedeploy", "Python call (what an application sees)"),
                       ("edgedeploy-own", "OpenVINO's own timer of the same calls")):
        diff = med[tool] / med["benchmark_app"] - 1
        # paired per round (the two runs of a round are back to back, so slow drift in outside load cancels)
        ratios = [next(r["median_ms"] for r in runs if r["round"] == k and r["tool"] == tool)
                  / next(r["median_ms"] for r in runs if r["round"] == k and r["tool"] == "benchmark_app") - 1
                  for k in range(1, args.rounds + 1)]
        paired = statistics.median(ratios)
        summary[tool] = {"difference": diff, "per_round_difference": ratios, "median_paired_difference": paired}
        print(f"\n{tool} ({what}): median of medians {med[tool]:.4f} ms vs benchmark_app "
              f"{med['benchmark_app']:.4f} ms, difference {diff:+.2%} ({'within' if abs(diff) <= 0.05 else 'outside'} 5%)")
        print("  per-round difference: " + ", ".join(f"{r:+.1%}" for r in ratios) + f"; median {paired:+.2%}")
    if "benchmark_app-static" in med:
        print(f"benchmark_app with -shape (model reshaped to a static batch): {med['benchmark_app-static']:.4f} ms "
              f"({med['benchmark_app-static'] / med['benchmark_app'] - 1:+.2%} vs the dynamic-batch IR)")
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median_of_medians": med, **summary}, indent=2))


if __name__ == "__main__":
    main()
