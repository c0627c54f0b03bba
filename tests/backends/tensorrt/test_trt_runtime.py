"""The thin TensorRT layer on a real GPU: build from a plan, manifest, runner, timing, compatibility refusal.

These tests need TensorRT (and cuda-python, which the runner uses); on machines without TensorRT the whole module
is skipped with that reason. Everything TensorRT-independent is covered by test_trt_plan.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

try:
    import tensorrt as trt
except (ImportError, OSError):
    pytest.skip("TensorRT is not installed: needs an NVIDIA GPU machine", allow_module_level=True)

from edgedeploy.backends import trt_manifest, trt_plan  # noqa: E402
from edgedeploy.backends.onnxruntime import OnnxRuntimeRunner  # noqa: E402
from edgedeploy.backends.tensorrt import TensorRTBackend, load_plan, probe_runtime  # noqa: E402
from edgedeploy.config import TensorRTSettings  # noqa: E402
from edgedeploy.errors import EdgeDeployError  # noqa: E402
from edgedeploy.validate import metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[3]
MAJOR = int(trt.__version__.split(".")[0])


def conv_model(path: Path, op: str = "Relu", name: str = "relu0") -> Path:
    """images [batch, 3, 16, 16] → Conv(3→8, 3x3) → op → pred."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "b")
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, 16, 16])
    y = helper.make_tensor_value_info("pred", TensorProto.FLOAT, ["batch", 8, 16, 16])
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node(op, ["c"], ["pred"], name=name, domain="" if op == "Relu" else "mystery.domain")]
    opsets = [helper.make_opsetid("", 17)] + ([] if op == "Relu" else [helper.make_opsetid("mystery.domain", 1)])
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w, b]), opset_imports=opsets)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def deploy(tmp_path) -> Path:
    return conv_model(tmp_path / "deploy.onnx")


def feeds(batch: int) -> dict[str, np.ndarray]:
    return {"images": np.random.default_rng(batch).normal(size=(batch, 3, 16, 16)).astype(np.float32)}


def test_fp32_build_writes_plan_manifest_and_matches_onnxruntime(deploy, tmp_path):
    built = TensorRTBackend().build(deploy, tmp_path / "trt", "fp32", TensorRTSettings())
    assert built.artifact == tmp_path / "trt" / "model.plan"
    assert all(p.is_file() for p in built.files)
    m, _ = trt_manifest.read_manifest(built.artifact)
    here = probe_runtime()
    assert m["tensorrt"]["version"] == trt.__version__
    assert m["gpu"]["compute_capability"] == here["gpu"]["compute_capability"]
    assert [t["name"] for t in m["io_tensors"]] == ["images", "pred"]
    assert m["io_tensors"][0]["profile"] == {"min": [1, 3, 16, 16], "opt": [1, 3, 16, 16], "max": [8, 3, 16, 16]}
    assert "TF32" in m["flags"]["cleared"]
    runner = TensorRTBackend().load(built)
    reference = OnnxRuntimeRunner(deploy)
    for batch in (1, 5, 20):  # 20 is beyond the profile's max of 8: run in chunks
        x = feeds(batch)
        got, want = runner.run(x), reference.run(x)
        assert got["pred"].shape == (batch, 8, 16, 16)
        assert metrics.compare(want["pred"], got["pred"])["rel_l2"] < 1e-5
    assert runner.conditions["backend"] == "tensorrt" and runner.conditions["version"] == trt.__version__
    runner.close()


def test_fp16_route_follows_the_major_version(deploy, tmp_path):
    if MAJOR == 10:
        built = TensorRTBackend().build(deploy, tmp_path / "trt", "fp16", TensorRTSettings())
        assert built.info["builder_flags"] == ["FP16"] and not built.info["strongly_typed"]
        runner = load_plan(built.artifact)
        x = feeds(4)
        rel = metrics.compare(OnnxRuntimeRunner(deploy).run(x)["pred"], runner.run(x)["pred"])["rel_l2"]
        assert rel < 1e-2
        runner.close()
    else:  # TensorRT 11 builds the precision stage's fp16 graph, which this test does not make
        with pytest.raises(EdgeDeployError, match="deploy.fp16.onnx"):
            TensorRTBackend().build(deploy, tmp_path / "trt", "fp16", TensorRTSettings())


def test_marked_outputs_return_every_layer_tensor_and_match_onnxruntime(deploy, tmp_path):
    """`debug precision --target trt`'s engine: conv0's output `c`, marked, comes back beside `pred`, with fp32 values
    that match ONNX Runtime's run of the same tensor."""
    built = TensorRTBackend().build_marked(deploy, tmp_path / "trt", "fp32", TensorRTSettings())
    runner = load_plan(built.artifact)
    model = onnx.load(str(deploy))
    model.graph.output.extend([onnx.ValueInfoProto(name="c")])
    onnx.save(model, str(tmp_path / "with_c.onnx"))
    x = feeds(3)
    got, want = runner.run(x), OnnxRuntimeRunner(tmp_path / "with_c.onnx").run(x)
    runner.close()
    assert built.info["marked_outputs"] >= 1 and "c" in got
    assert metrics.compare(want["c"], got["c"])["rel_l2"] < 1e-5
    assert metrics.compare(want["pred"], got["pred"])["rel_l2"] < 1e-5


def test_a_layer_held_to_fp32_in_an_fp16_build(deploy, tmp_path):
    """A per-layer precision constraint (weakly typed TensorRT 8/10): the build obeys it (or fails saying so)."""
    if MAJOR >= 11:
        with pytest.raises(EdgeDeployError, match="strongly typed"):
            TensorRTBackend().build(deploy, tmp_path / "trt", "fp32",
                                    TensorRTSettings(layer_precisions={"conv0": "fp32"}))
        return
    built = TensorRTBackend().build(deploy, tmp_path / "trt", "fp16",
                                    TensorRTSettings(layer_precisions={"conv0": "fp32"}))
    assert built.info["layer_precisions"] == {"conv0": ["conv0"]}
    assert "OBEY_PRECISION_CONSTRAINTS" in built.info["builder_flags"]
    runner = load_plan(built.artifact)
    x = feeds(2)
    rel = metrics.compare(OnnxRuntimeRunner(deploy).run(x)["pred"], runner.run(x)["pred"])["rel_l2"]
    runner.close()
    assert rel < 1e-2


def test_parser_error_names_the_node_and_op(tmp_path):
    model = conv_model(tmp_path / "deploy.onnx", op="Frobnicate", name="frob_7")
    with pytest.raises(EdgeDeployError) as e:
        TensorRTBackend().build(model, tmp_path / "trt", "fp32", TensorRTSettings())
    assert "frob_7" in e.value.message and "Frobnicate" in e.value.message
    assert e.value.where == str(model)
    assert not (tmp_path / "trt" / "model.plan").exists()


def test_timing_cache_is_saved_and_reused(deploy, tmp_path):
    cache = tmp_path / "caches" / "timing.cache"
    s = TensorRTSettings(timing_cache=cache, builder_optimization_level=1, workspace_mb=256)
    TensorRTBackend().build(deploy, tmp_path / "a", "fp32", s)
    assert cache.is_file() and cache.stat().st_size > 0
    built = TensorRTBackend().build(deploy, tmp_path / "b", "fp32", s)
    m, _ = trt_manifest.read_manifest(built.artifact)
    assert m["build"]["timing_cache"] == str(cache) and m["build"]["workspace_bytes"] == 256 << 20


def test_static_profile_and_version_compatible_plan(deploy, tmp_path):
    s = TensorRTSettings(profiles={"batch": {"min": 2, "opt": 2, "max": 2}}, version_compatible=True)
    built = TensorRTBackend().build(deploy, tmp_path / "trt", "fp32", s)
    m, _ = trt_manifest.read_manifest(built.artifact)
    assert m["compatibility"]["version_compatible"] is True and "VERSION_COMPATIBLE" in m["flags"]["builder"]
    runner = load_plan(built.artifact)
    x = feeds(5)  # batch 5 on a batch-2 engine: chunks of 2, the last padded
    rel = metrics.compare(OnnxRuntimeRunner(deploy).run(x)["pred"], runner.run(x)["pred"])["rel_l2"]
    assert rel < 1e-5
    runner.close()


def test_an_incompatible_plan_is_refused_before_deserializing(deploy, tmp_path):
    built = TensorRTBackend().build(deploy, tmp_path / "trt", "fp32", TensorRTSettings())
    mpath = trt_plan.manifest_path_for(built.artifact)
    m = json.loads(mpath.read_text())
    m["tensorrt"]["version"] = "9.9.9"
    mpath.write_text(json.dumps(m))
    with pytest.raises(EdgeDeployError, match="built with TensorRT 9.9.9"):
        load_plan(built.artifact)
    built.artifact.write_bytes(b"garbage")
    with pytest.raises(EdgeDeployError, match="changed since its manifest"):
        load_plan(built.artifact)


def test_benchmark_reports_cuda_event_timings(deploy, tmp_path):
    runner = load_plan(TensorRTBackend().build(deploy, tmp_path / "trt", "fp32", TensorRTSettings()).artifact)
    stats = runner.benchmark(feeds(8), warmup=3, iterations=20)
    for key in ("h2d", "gpu_compute", "d2h", "latency", "host_wall"):
        s = stats[key]
        assert s["n"] == 20 and 0 < s["min_ms"] <= s["median_ms"] <= s["p99_ms"] <= s["max_ms"]
    assert stats["latency"]["median_ms"] >= stats["gpu_compute"]["median_ms"]
    assert stats["batch"] == 8 and stats["throughput_per_s"] > 0
    runner.close()


def test_cli_inspect_says_this_machine_can_run_its_own_plan(deploy, tmp_path):
    TensorRTBackend().build(deploy, tmp_path / "trt", "fp32", TensorRTSettings())
    result = subprocess.run([sys.executable, "-m", "edgedeploy.cli", "inspect", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "can run this plan" in result.stdout
