"""End-to-end builds of the bundled demo detector on the CPU backends."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from edgedeploy import pipeline
from edgedeploy.config import demo_spec_path, load_spec

from conftest import fast

pytestmark = pytest.mark.slow  # every test builds the demo (PyTorch export)


def ops(path: Path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.fixture(scope="module")
def ov_fp32(tmp_path_factory):
    out = tmp_path_factory.mktemp("ov32")
    return out, pipeline.build(fast(load_spec(demo_spec_path()), target="openvino", precision="fp32"), out)


def test_openvino_fp32_matches_pytorch(ov_fp32):
    out, report = ov_fp32
    assert report["passed"], report["checks"]
    assert report["conditions"]["precision_hint_requested"] == "f32"
    assert report["conditions"]["precision_hint_effective"] == "f32"
    assert report["tensors"]["pred"]["rel_l2"] <= 1e-5
    assert report["task"]["map50"] >= 0.9
    assert abs(report["task"]["map50_drop"]) <= 1e-3
    assert {t["batch"] for t in report["latency"]} == {1, 8}
    assert set(report["stage_seconds"]) == {"export", "optimize", "precision", "build", "validate"}
    for name in ("raw.onnx", "reference.npz", "deploy.onnx", "optimize.json", "openvino/model.xml",
                 "openvino/model.bin", "manifest.json", "report.json", "report.md"):
        assert (out / name).is_file(), name
    assert json.loads((out / "report.json").read_text())["schema"] == pipeline.REPORT_SCHEMA
    assert "PASS" in (out / "report.md").read_text().splitlines()[0]


def test_openvino_build_writes_a_checked_and_timed_static_batch1_copy(ov_fp32):
    """batch1_artifact auto: beside the dynamic IR (validated at every batch size asked for), its static batch-1
    copy, compared with it and timed at batch 1, named in the manifest and the report."""
    import openvino as ov

    out, report = ov_fp32
    b1 = report["artifact"]["batch1"]
    assert b1["path"] == "openvino/batch1/model.xml" and b1["max_rel_l2_vs_dynamic"] <= 1e-5
    assert [t["batch"] for t in b1["latency"]] == [t["batch"] for t in b1["dynamic_latency"]] == [1]
    assert b1["latency"][0]["median_ms"] > 0 and b1["speedup_vs_dynamic_b1"] > 0
    shape = ov.Core().read_model(str(out / b1["path"])).inputs[0].get_partial_shape()
    assert shape.is_static and shape[0].get_length() == 1
    assert ov.Core().read_model(str(out / "openvino/model.xml")).inputs[0].get_partial_shape()[0].is_dynamic
    assert {"openvino/batch1/model.xml", "openvino/batch1/model.bin"} <= set(
        json.loads((out / "manifest.json").read_text())["files"])
    assert any(c["name"] == "batch1.rel_l2_vs_dynamic" and c["passed"] for c in report["checks"])
    assert "Batch-1 copy `openvino/batch1/model.xml`" in (out / "report.md").read_text()


def test_default_deploy_graph_has_nothing_left_to_fold(ov_fp32):
    out, _ = ov_fp32
    deploy = onnx.load(str(out / "deploy.onnx"))
    kinds = [n.op_type for n in deploy.graph.node]
    assert "BatchNormalization" not in kinds
    assert [o.name for o in deploy.graph.output] == ["pred"]
    constants = {i.name for i in deploy.graph.initializer} | {o for n in deploy.graph.node if n.op_type == "Constant"
                                                               for o in n.output}
    producer = {o: n.op_type for n in deploy.graph.node for o in n.output}
    consumers: dict[str, list[str]] = {}
    for n in deploy.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n.op_type)
    for n in deploy.graph.node:
        if n.op_type == "Add":  # RepConv branches merged: no Add sums two convs
            assert [producer.get(i) for i in n.input].count("Conv") < 2, n.name
        if n.op_type in ("Add", "Mul") and any(i in constants for i in n.input):
            # ImplicitM (conv * m) and ImplicitA (conv(x + a)) folded: no per-channel constant right after or
            # right before a conv
            assert not any(producer.get(i) == "Conv" for i in n.input if i not in constants), n.name
            assert "Conv" not in consumers.get(n.output[0], []), n.name
    assert kinds.count("Conv") < ops(out / "raw.onnx").count("Conv")


def test_openvino_fp16_keeps_map(tmp_path):
    report = pipeline.build(fast(load_spec(demo_spec_path()), target="openvino", precision="fp16"), tmp_path)
    assert report["passed"], report["checks"]
    assert report["artifact"]["weights"] == "fp16"
    assert abs(report["task"]["map50_drop"]) <= 0.005


def test_onnxruntime_target(tmp_path):
    report = pipeline.build(fast(load_spec(demo_spec_path()), target="onnxruntime"), tmp_path)
    assert report["passed"], report["checks"]
    assert report["tensors"]["pred"]["rel_l2"] <= 1e-5
    assert (tmp_path / "onnxruntime" / "model.onnx").is_file()


def test_training_structured_graph_optimizes_to_the_deploy_graph(ov_fp32, tmp_path):
    spec = fast(load_spec(demo_spec_path().with_name("demo_training.yaml")), target="onnxruntime")
    report = pipeline.build(spec, tmp_path)
    assert report["passed"], report["checks"]
    raw = onnx.load(str(tmp_path / "raw.onnx"))
    assert "BatchNormalization" in [n.op_type for n in raw.graph.node]
    assert {o.name for o in raw.graph.output} == {"pred", "aux_p3", "aux_p4"}
    deploy_ops = ops(tmp_path / "deploy.onnx")
    assert "BatchNormalization" not in deploy_ops
    assert sorted(deploy_ops) == sorted(ops(ov_fp32[0] / "deploy.onnx"))


def test_onnx_file_as_input(ov_fp32, write_config, tmp_path):
    out, _ = ov_fp32
    spec_path = write_config({
        "name": "from-onnx",
        "model": {"onnx": str(out / "raw.onnx")},
        "inputs": [{"name": "images", "shape": ["batch", 3, 64, 64]}],
        "validation": {"data": str(demo_spec_path().parent / "eval.npz"), "task": "detection", "samples": 32},
    })
    report = pipeline.build(fast(load_spec(spec_path), target="onnxruntime"), tmp_path / "o")
    assert report["passed"], report["checks"]
    assert report["source"]["kind"] == "onnx"

