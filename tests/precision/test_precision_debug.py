"""INT8 layer localisation and `edgedeploy debug precision` on a model with one planted bad layer, and on the demo.

The planted model: conv1 makes one channel ~300× larger than the others, conv2 reads that channel with a ~1/300
weight, so the float output is ordinary but conv2's input has a range that per-tensor int8 cannot resolve: conv2 is
the layer that loses the accuracy, and keeping it alone in float restores it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from edgedeploy import pipeline
from edgedeploy.config import load_spec
from edgedeploy import precision_debug as debug
from edgedeploy.validate import localize

OUTLIER = 300.0


def planted_model(path: Path) -> None:
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)
    w1[0] *= OUTLIER
    w2 = rng.normal(0, 0.3, (8, 8, 1, 1)).astype(np.float32)
    w2[:, 0] /= OUTLIER
    w3 = rng.normal(0, 0.3, (4, 8, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (w3, "w3"))]
    inits += [numpy_helper.from_array(rng.normal(0, 0.1, (c,)).astype(np.float32), f"b{i}")
              for i, c in ((1, 8), (2, 8), (3, 4))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
             helper.make_node("Conv", ["r2", "w3", "b3"], ["y"], name="conv3", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "planted", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               ["batch", 4, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def planted_spec(tmp_path_factory):
    """A build spec for the planted model, with an int8 budget on the output's rel-L2 that only conv2 breaks."""
    root = tmp_path_factory.mktemp("planted")
    planted_model(root / "model.onnx")
    rng = np.random.default_rng(1)
    np.save(root / "calib.npy", rng.random((64, 4, 16, 16), dtype=np.float32))
    np.savez(root / "val.npz", x=rng.random((32, 4, 16, 16), dtype=np.float32))
    spec = {"name": "planted", "model": {"onnx": "model.onnx"},
            "inputs": [{"name": "x", "shape": ["batch", 4, 16, 16]}],
            "validation": {"data": "val.npz", "latency": {"warmup": 1, "iterations": 3, "batch_sizes": [1]}},
            "calibration": {"data": "calib.npy"},
            "thresholds": {"int8": {"max_rel_l2": 0.15}}}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "spec.yaml"


@pytest.fixture(scope="module", params=["onnxruntime", "openvino"])
def planted_build(request, planted_spec, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"planted-{request.param}") / "out"
    report = pipeline.build(load_spec(planted_spec).model_copy(update={"target": request.param,
                                                                        "precision": "int8"}), out)
    return out, report


def test_the_planted_build_fails_its_budget(planted_build):
    _, report = planted_build
    assert not report["passed"]
    assert report["tensors"]["y"]["rel_l2"] > 0.15


def test_localisation_ranks_the_planted_layer_first(planted_build):
    out, _ = planted_build
    art = debug.load_artifact(out)
    layers = debug.localize_artifact(art, samples=16)
    ranked = localize.rank(layers)
    assert localize._node_name(ranked[0].layer) == "conv2"
    assert ranked[0].local_rel_l2 > 3 * ranked[1].local_rel_l2
    by_node = {localize._node_name(lay.layer): lay for lay in layers}
    # the error is made at conv2 and carried on: cumulative error after it is at least conv2's own
    assert by_node["conv3"].rel_l2 > by_node["conv1"].rel_l2
    assert all(np.isfinite(lay.rel_l2) for lay in layers)


@pytest.mark.parametrize("planted_build", ["onnxruntime"], indirect=True)  # a Q/DQ graph to mark
def test_marked_engine_localisation_ranks_the_planted_layer_first(planted_build):
    """localize_marked, what `--target trt` runs on TensorRT's engine, here on an engine that computes: the Q/DQ
    graph run by ONNX Runtime with every node output marked. It ranks by the error each layer adds (an engine runs
    layers fused, so none runs alone) and finds the same layer as the CPU localizer."""
    out, _ = planted_build
    art = debug.load_artifact(out)
    qdq = onnx.load(str(art.quantized_model()))
    names = [o for n in qdq.graph.node if n.op_type not in ("QuantizeLinear", "DequantizeLinear") for o in n.output]
    engine = localize._ort_session(localize._with_outputs(qdq, names))
    feeds = {k: v[:16] for k, v in art.inputs.items()}
    layers = localize.localize_marked(art.deploy_onnx, art.quantized_model(),
                                      lambda chunk: localize._ort_run(engine, chunk, names), feeds)
    ranked = localize.rank(layers)
    assert ranked[0].layer == "conv2" and ranked[0].local_rel_l2 > 3 * ranked[1].local_rel_l2
    cpu = {lay.layer: lay.rel_l2 for lay in debug.localize_artifact(art, samples=16)}
    assert all(lay.rel_l2 == pytest.approx(cpu[lay.layer], rel=1e-4) for lay in layers)  # same cumulative errors


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_search_keeps_the_planted_layer_in_float_and_the_rebuild_passes(planted_build, tmp_path):
    out, _ = planted_build
    report = debug.debug_precision(out, samples=16, do_search=True)
    trials = report["trials"]
    assert not trials[0]["passed"] and trials[0]["kept_float"] == []
    assert report["result"]["passed"]
    kept = report["result"]["kept_float"]
    assert [localize._node_name(k) for k in kept] == ["conv2"]
    snippet = yaml.safe_load((out.with_name(f"{out.name}-debug-precision") / "keep-float.yaml").read_text())
    names = snippet["int8"]["ignored_scope"]["names"] if "ignored_scope" in snippet["int8"] else \
        snippet["int8"]["qdq"]["excluded"]["names"]
    assert names == kept
    for name in ("precision-debug.json", "report.md", "report.html"):
        assert (out.with_name(f"{out.name}-debug-precision") / name).stat().st_size > 0
    assert "conv2" in (out.with_name(f"{out.name}-debug-precision") / "report.md").read_text()

    rebuilt = debug.rebuild(out, kept, tmp_path / "rebuilt")
    assert rebuilt["passed"], [c["message"] for c in rebuilt["checks"] if not c["passed"]]
    assert rebuilt["precision_stage"]["cache"]["status"] == "reused"  # the search's quantization, by key


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_search_reports_failure_when_the_budget_cannot_hold(planted_build):
    out, _ = planted_build
    report = debug.debug_precision(out, tmp_path_out := out.with_name("debug-none"), samples=8, do_search=True,
                                   max_layers=1, budget_overrides={"max_rel_l2": 1e-9})
    assert not report["result"]["passed"] and report["result"]["kept_float"] is None
    assert [len(t["kept_float"]) for t in report["trials"]] == [0, 1]
    assert not (tmp_path_out / "keep-float.yaml").exists()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgedeploy.cli", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_cli_on_the_demo_int8_artifact():
    from precision_helpers import built

    out, _ = built("onnxruntime", "int8")
    result = run_cli("debug", "precision", str(out), "--top", "5")
    assert result.returncode == 0, result.stderr
    report = json.loads((out.with_name(f"{out.name}-debug-precision") / "precision-debug.json").read_text())
    assert len(report["ranking"]) >= 30  # every quantized Conv of the demo, and more
    assert report["ranking"][0] in result.stderr
    html = (out.with_name(f"{out.name}-debug-precision") / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2


@pytest.mark.slow
def test_cli_refuses_a_float_artifact_and_rebuild_without_search(tmp_path):
    from precision_helpers import built

    out, _ = built("onnxruntime", "int8")
    result = run_cli("debug", "precision", str(out), "--rebuild", str(tmp_path / "r"))
    assert result.returncode == 2 and "--rebuild needs --search" in result.stderr
    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["spec"]["precision"] = "fp32"
    (fp32 / "manifest.json").write_text(json.dumps(manifest))
    result = run_cli("debug", "precision", str(fp32))
    assert result.returncode == 2 and "debug precision analyses int8 builds" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here: the missing-SDK message cannot appear")
@pytest.mark.parametrize("planted_build", ["onnxruntime"], indirect=True)
def test_cli_target_trt_without_tensorrt_says_it_runs_on_the_device(planted_build, tmp_path):
    out, _ = planted_build
    result = run_cli("debug", "precision", str(out), "--target", "trt", "--out", str(tmp_path / "d"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {out}: debug precision --target trt runs on the device: TensorRT is not installed" in result.stderr
    assert not (tmp_path / "d").exists()
