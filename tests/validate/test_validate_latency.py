"""The latency harness: statistics, fixed count vs time budget, async throughput on OpenVINO and ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedeploy.backends.onnxruntime import OnnxRuntimeRunner
from edgedeploy.backends.openvino import OpenVINOBackend
from edgedeploy.validate import latency, notices
from edgedeploy.validate.report import render_markdown
from report_helpers import report_of


@pytest.fixture(scope="module")
def matmul_onnx(tmp_path_factory):
    """A real (if small) model: (batch, 256) @ (256, 256) → Relu, twice."""
    rng = np.random.default_rng(0)
    w = [numpy_helper.from_array(rng.standard_normal((256, 256)).astype(np.float32) / 16, f"w{i}") for i in range(2)]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w0"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
         helper.make_node("MatMul", ["b", "w1"], ["y"])],
        "mm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 256])], w)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    path = tmp_path_factory.mktemp("mm") / "mm.onnx"
    onnx.save(model, str(path))
    return path


def feeds(batch: int) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(batch).standard_normal((batch, 256)).astype(np.float32)}


def test_stats_match_numpy():
    ms = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    s = latency.stats(ms, unstable_cov=0.05)
    assert s["min_ms"] == 1.0 and s["max_ms"] == 100.0 and s["median_ms"] == 3.0 and s["mean_ms"] == 22.0
    assert s["p90_ms"] == pytest.approx(np.percentile(ms, 90)) and s["p99_ms"] == pytest.approx(np.percentile(ms, 99))
    assert s["std_ms"] == pytest.approx(np.std(ms, ddof=1))
    assert s["cov"] == pytest.approx(np.std(ms, ddof=1) / 22.0)
    assert s["unstable"] and not s["p99_exact"]
    steady = latency.stats(np.full(200, 2.0) + np.linspace(0, 0.01, 200))
    assert not steady["unstable"] and steady["p99_exact"] and steady["count"] == 200
    with pytest.raises(ValueError):
        latency.stats(np.array([]))


def test_fixed_count_and_time_budget(matmul_onnx):
    runner = OnnxRuntimeRunner(matmul_onnx, threads=1)
    fixed = latency.measure_sync(runner, feeds(4), warmup=2, iterations=25)
    assert fixed["iterations"] == 25 and fixed["batch"] == 4 and len(fixed["samples_ms"]) == 25
    assert fixed["min_ms"] <= fixed["median_ms"] <= fixed["p90_ms"] <= fixed["p99_ms"] <= fixed["max_ms"]
    assert fixed["throughput_per_s"] == pytest.approx(4e3 / fixed["median_ms"])
    assert fixed["budget"] == {"iterations": 25}
    budget = latency.measure_sync(runner, feeds(4), warmup=1, iterations=None, duration_s=0.3)
    assert budget["wall_s"] >= 0.3 and budget["iterations"] >= 5 and budget["budget"] == {"duration_s": 0.3}
    # the recorded conditions
    assert "load_per_core" in fixed and "other_cpu_busy" in fixed


def test_onnxruntime_throughput_uses_threads_not_a_queue(matmul_onnx):
    runner = OnnxRuntimeRunner(matmul_onnx, threads=1)
    result = latency.measure(runner, feeds(8), warmup=2, iterations=20, async_requests=2)
    a = result["async"]
    assert a["mode"] == "async" and a["requests"] == 2 and a["inferences"] == 20
    assert "no async queue" in a["api"]
    assert a["throughput_per_s"] == pytest.approx(20 * 8 / a["wall_s"])


def test_openvino_async_queue(matmul_onnx, tmp_path):
    backend = OpenVINOBackend()
    built = backend.build(matmul_onnx, tmp_path / "ov", "fp32")
    runner = backend.load(built, threads=2)
    result = latency.measure(runner, feeds(8), warmup=2, iterations=None, duration_s=0.2, async_requests=None)
    a = result["async"]
    assert a["api"] == "openvino.AsyncInferQueue" and a["performance_hint"] == "THROUGHPUT"
    assert a["requests"] >= 1 and a["streams"] >= 1 and a["wall_s"] >= 0.2
    assert result["budget"] == {"duration_s": 0.2}
    # the runner's synchronous results are unaffected by the throughput compilation
    np.testing.assert_allclose(runner.run(feeds(2))["y"], runner.run(feeds(2))["y"])


def test_openvino_own_timer_is_recorded_beside_the_python_call(matmul_onnx, tmp_path):
    backend = OpenVINOBackend()
    runner = backend.load(backend.build(matmul_onnx, tmp_path / "ov", "fp32"), threads=1)
    result = latency.measure_sync(runner, feeds(8), warmup=2, iterations=50)
    own = result["backend_timing"]
    assert own["source"].startswith("openvino")
    # the plugin times the inference inside the Python call: never longer, call by call
    assert 0 < own["min_ms"] <= result["min_ms"] and own["median_ms"] <= result["median_ms"]
    assert own["max_ms"] <= result["max_ms"]
    assert "backend_timing" not in latency.measure_sync(OnnxRuntimeRunner(matmul_onnx, threads=1), feeds(8), 2, 10)


def test_runner_without_run_many_reports_sync_throughput():
    class Plain:
        input_names, output_names, conditions = ["x"], ["y"], {"backend": "plain"}

        def run(self, f):
            return {"y": f["x"] * 2}

    result = latency.measure(Plain(), feeds(2), warmup=1, iterations=5, async_requests=None)
    assert result["async"]["mode"] == "sync" and "no asynchronous API" in result["async"]["note"]


def test_unstable_timing_warns_and_shows_in_markdown(demo_spec):
    t = {"batch": 8, **latency.stats(np.array([1.0, 1.0, 5.0, 1.0])), "throughput_per_s": 1.0, "iterations": 4,
         "load_per_core": 1.5, "other_cpu_busy": 0.6}
    report = {"passed": True, "conditions": {}, "name": "m", "target": "openvino", "precision": "fp32",
              "artifact": {"path": "a"}, "source": {}, "validation_data": "d", "checks": [], "tensors": {},
              "latency": [t]}
    warnings = notices.latency_unstable(report, demo_spec)
    assert len(warnings) == 1 and "unstable" in warnings[0]["message"] and "60%" in warnings[0]["message"]
    assert warnings[0]["title"] == "latency CoV 100% at batch 8"  # the figure is in the verdict line too
    md = render_markdown(report_of({**report, "warnings": warnings}))
    assert "100.0% unstable" in md and "> ⚠️ latency at batch 8 is unstable" in md


def test_other_processes_cpu_share_is_unknown_for_a_window_too_short_to_measure():
    """/proc/stat counts 10 ms ticks: one tick in a 0.2 ms window read as 5000 % before."""
    with latency._CpuWindow() as window:
        sum(range(1000))
    assert window.other_busy is None


def test_no_budget_means_a_time_budget():
    from edgedeploy.config import LatencySettings

    settings = LatencySettings()
    assert latency.resolve_budget(settings.iterations, settings.duration_s) == (None, latency.DEFAULT_DURATION_S)
    assert latency.resolve_budget(50, None) == (50, None)
    assert latency.resolve_budget(50, 2.0) == (None, 2.0)  # a time budget wins, as before


def test_interleaved_windows_give_each_runner_the_whole_budget(matmul_onnx):
    runners = {"a": OnnxRuntimeRunner(matmul_onnx, threads=1), "b": OnnxRuntimeRunner(matmul_onnx, threads=1)}
    result = latency.measure_interleaved(runners, feeds(4), warmup=1, iterations=None, duration_s=0.3, rounds=3)
    for r in result.values():
        assert r["rounds"] == 3 and r["wall_s"] >= 0.3 and r["iterations"] >= 3 * 10
        assert len(r["round_medians_ms"]) == 3
        assert r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
    fixed = latency.measure_interleaved(runners, feeds(4), warmup=1, iterations=30, rounds=3)
    assert fixed["a"]["iterations"] == fixed["b"]["iterations"] == 30


def test_fresh_process_times_the_artifact_and_the_float_graph(matmul_onnx, tmp_path):
    """The build's measurement: a new Python process loads the artifacts and times them; its memory is its own."""
    from edgedeploy.backends import BuildResult
    from edgedeploy.config import BuildSpec

    spec = BuildSpec.model_validate({
        "model": {"onnx": str(matmul_onnx)}, "inputs": [{"name": "x", "shape": ["batch", 256]}],
        "target": "onnxruntime",
        "validation": {"latency": {"batch_sizes": [1, 4], "duration_s": 0.2, "threads": 1, "async_requests": 0}}})
    art = BuildResult(matmul_onnx, [], {"precision": "fp32"})
    result = latency.measure_fresh(spec, {"artifact": art, "float": art}, feeds(4), [1, 4])
    assert [t["batch"] for t in result["timings"]["artifact"]] == [1, 4] == [t["batch"] for t in result["timings"]["float"]]
    assert all(t["rounds"] >= 3 and len(t["round_medians_ms"]) == t["rounds"] for t in result["timings"]["artifact"])
    assert result["conditions"]["artifact"]["threads"] == 1
    assert 20 < result["peak_rss_mb"] < 1024  # the child's own peak, not the parent's image it started from


def test_int8_slower_than_float_is_a_warning(demo_spec):
    def timing(batch, median, rounds=None):
        return {"batch": batch, "median_ms": median, **({"round_medians_ms": rounds} if rounds else {})}

    steady = latency.int8_vs_float([timing(1, 1.0), timing(8, 5.0)], [timing(1, 1.02), timing(8, 9.0)])
    assert not any(c["slower"] for c in steady)  # within 3 %: not slower
    noisy = latency.int8_vs_float([timing(8, 7.0, [7.0, 7.2, 5.0])], [timing(8, 6.0, [6.0, 6.1, 6.2])])
    assert not noisy[0]["slower"]  # faster in one round: outside load, not int8, may have made the difference
    compared = latency.int8_vs_float([timing(1, 0.9), timing(8, 20.0, [20.0, 20.5, 19.8])],
                                     [timing(1, 1.0), timing(8, 6.0, [6.0, 6.1, 5.9])])  # rounds: an interval
    assert [c["slower"] for c in compared] == [False, True]
    report = {"passed": True, "conditions": {}, "name": "m", "target": "onnxruntime", "precision": "int8",
              "artifact": {"path": "a"}, "source": {}, "validation_data": "d", "checks": [], "tensors": {},
              "latency": [], "latency_measurement": {"int8_vs_float": compared}, "schema": "edgedeploy.report/3"}
    warnings = notices.int8_slower_than_float(report, demo_spec)
    assert [w["code"] for w in warnings] == ["int8_slower_than_float"]
    assert "batch 8: 20 ms vs 6 ms (3.35x, 95% interval 3.31-3.39x over 3 interleaved rounds)" in warnings[0]["message"] and "batch 1" not in warnings[0]["message"]
    report["warnings"] = warnings
    assert f"> ⚠️ {warnings[0]['message']}" in render_markdown(report_of(report))
    from edgedeploy.validate.html import render_html

    assert "INT8 artifact is slower than the float artifact" in render_html(report_of(report))


def test_headline_shows_the_spread_only_when_unstable():
    steady = {"median_ms": 2.0, "p10_ms": 1.9, "p90_ms": 2.1, "min_ms": 1.8, "cov": 0.01, "unstable": False}
    assert latency.headline(steady) == "2 ms"
    shaky = {**steady, "p10_ms": 1.2, "p90_ms": 6.5, "cov": 0.4, "unstable": True}
    assert latency.headline(shaky) == "2 ms (unstable: p10-p90 1.2-6.5 ms, CoV 40%)"
