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
    md = render_markdown({**report, "warnings": warnings})
    assert "100.0% unstable" in md and "> ⚠️ latency at batch 8 is unstable" in md


def test_other_processes_cpu_share_is_unknown_for_a_window_too_short_to_measure():
    """/proc/stat counts 10 ms ticks: one tick in a 0.2 ms window read as 5000 % before."""
    with latency._CpuWindow() as window:
        sum(range(1000))
    assert window.other_busy is None
