"""`edgedeploy debug precision --target trt` on the conformance stand-ins: the engine built with every layer output
marked (INetworkDefinition.mark_output), compared layer by layer with deploy.onnx on ONNX Runtime, and the search's
trials holding layers in fp32 by per-layer precision constraints (TensorRT 8/10, weakly typed) or by Q/DQ removal
alone (TensorRT 11, strongly typed).

The stand-in computes nothing: every element of output sample b it writes is the sum of input sample b (a marker).
So the errors compared here are those markers against ONNX Runtime's real fp32 values: meaningless as accuracy,
but exactly what edgedeploy must compute from whatever the engine returns, which is what these tests check (the
ranking on real numbers is tested on ONNX Runtime in tests/precision/test_precision_debug.py)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from trt_standin import install, surface_versions
from trt_standin.models import conv_model, feeds, marker, quantized_twin

from edgedeploy import precision_debug as debug
from edgedeploy.backends import trt_plan
from edgedeploy.backends.tensorrt import TensorRTBackend, load_plan
from edgedeploy.config import TensorRTSettings, load_spec
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.validate import localize, metrics

REPO = Path(__file__).resolve().parents[3]
VERSIONS = surface_versions()
NEWEST10 = max((v for v in VERSIONS if v.startswith("10.")), key=lambda v: int(v.split(".")[1]))
NEWEST11 = max((v for v in VERSIONS if v.startswith("11.")), key=lambda v: int(v.split(".")[1]))
ASKED = ["10.3", NEWEST10, NEWEST11]  # JetPack 6.1/6.2, the newest 10.x, the newest 11.x


def int8_folder(folder):
    conv_model(folder / "deploy.onnx")
    quantized_twin(folder / "deploy.int8.qdq.onnx")
    return folder


def _blob(built) -> dict:
    return json.loads(built.artifact.read_bytes().split(b"\n", 1)[1])


def _quiet(fn, *args, **kwargs):
    """TensorRT 10.12+ deprecates per-layer precision constraints: its bindings warn, as the stand-in does."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fn(*args, **kwargs)


def trt_artifact(folder, major: int, **tensorrt) -> debug.Artifact:
    """An int8 trt artifact as debug precision loads it: deploy.onnx, its Q/DQ graph, a spec with calibration data
    for the precision stage (which a search trial runs), and ONNX Runtime's fp32 outputs as the reference."""
    int8_folder(folder)
    rng = np.random.default_rng(0)
    np.savez(folder / "calib.npz", images=rng.random((16, 3, 16, 16), dtype=np.float32))
    np.savez(folder / "val.npz", images=rng.random((4, 3, 16, 16), dtype=np.float32))
    (folder / "spec.yaml").write_text(yaml.safe_dump({
        "name": "conv", "model": {"onnx": "deploy.onnx"}, "target": "trt", "precision": "int8",
        "inputs": [{"name": "images", "shape": ["batch", 3, 16, 16]}],
        "validation": {"data": "val.npz"}, "calibration": {"data": "calib.npz", "min_samples": 16},
        "tensorrt": tensorrt}))
    spec = load_spec(folder / "spec.yaml")
    x = feeds(4)
    reference = dict(zip(["pred"], ort.InferenceSession(str(folder / "deploy.onnx"), providers=[
        "CPUExecutionProvider"]).run(["pred"], x)))
    return debug.Artifact(folder, spec, x, reference, None, None, trt_major=major)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_float_layer_output_is_marked_before_the_build(monkeypatch, tmp_path, version):
    model = install(monkeypatch, version)
    int8_folder(tmp_path)
    built = TensorRTBackend().build_marked(tmp_path / "deploy.int8.qdq.onnx", tmp_path / "trt", "int8",
                                           TensorRTSettings())
    # conv0's output `c` is marked; relu0's `pred` already is an output; Q/DQ outputs (int8 values) are left alone
    assert [c for c in model.calls if c[0] == "mark_output"] == [("mark_output", "c")]
    assert [t["name"] for t in _blob(built)["outputs"]] == ["pred", "c"]  # the builder saw the marked output
    assert built.info["marked_outputs"] == 1
    runner = load_plan(built.artifact)
    try:
        assert runner.output_names == ["pred", "c"]
        out = runner.run(feeds(3))
    finally:
        runner.close()
    assert np.allclose(out["c"], marker(feeds(3)["images"]).reshape(3, 1, 1, 1))  # the engine returns it


@pytest.mark.parametrize("version", ASKED)
def test_engine_layers_are_compared_with_onnxruntime_fp32_and_ranked(monkeypatch, tmp_path, version):
    install(monkeypatch, version)
    art = trt_artifact(tmp_path, int(version.split(".")[0]))
    layers = debug.localize_artifact(art, samples=4)
    assert [lay.layer for lay in layers] == ["conv0", "relu0"] and all(lay.quantized for lay in layers)
    # the figures are the engine's returned tensors (stand-in markers) against ONNX Runtime's fp32 run, by name
    fp = onnx.load(str(tmp_path / "deploy.onnx"))
    fp.graph.output.extend([onnx.ValueInfoProto(name="c")])
    session = ort.InferenceSession(fp.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = dict(zip(["pred", "c"], session.run(["pred", "c"], {"images": art.inputs["images"]})))
    got = marker(art.inputs["images"]).reshape(4, 1, 1, 1) * np.ones((1, 8, 16, 16), np.float32)
    expected = {"conv0": metrics.compare(ref["c"], got)["rel_l2"], "relu0": metrics.compare(ref["pred"], got)["rel_l2"]}
    assert {lay.layer: pytest.approx(lay.rel_l2, rel=1e-5) for lay in layers} == expected
    by = {lay.layer: lay for lay in layers}
    # local: the float layer fed the engine's own inputs (conv0: the images; relu0: the engine's `c`) vs its output
    assert by["conv0"].local_rel_l2 == pytest.approx(by["conv0"].rel_l2, rel=1e-5)
    assert by["relu0"].local_rel_l2 == pytest.approx(metrics.compare(np.maximum(got, 0), got)["rel_l2"], abs=1e-6)
    assert [lay.layer for lay in localize.rank(layers)] == sorted(by, key=lambda n: -by[n].local_rel_l2)


@pytest.mark.parametrize("version", ASKED)
def test_search_trials_hold_layers_by_constraints_on_10_and_by_qdq_removal_on_11(monkeypatch, tmp_path, version):
    model = install(monkeypatch, version)
    major = int(version.split(".")[0])
    art = trt_artifact(tmp_path, major)
    spec = debug.keep_in_float(art.spec, ["conv0"], tmp_path / "cache", art.trt_major)
    assert "conv0" in spec.int8.qdq.excluded.names  # its Q/DQ removed on every release
    snippet = debug.scope_snippet(art.spec, ["conv0"], art.trt_major)
    built = _quiet(TensorRTBackend().build, tmp_path / "deploy.int8.qdq.onnx", tmp_path / "trt", "int8",
                   spec.tensorrt)
    blob = _blob(built)
    layer_calls = [c for c in model.calls if c[0].startswith("layer.")]
    if major == 10:  # weakly typed (INT8 + FP16 flags): conv0 held to fp32, computed and written, obeyed
        assert spec.tensorrt.layer_precisions == {"conv0": "fp32"}
        assert "layer_precisions:\n    conv0: fp32" in snippet
        assert layer_calls == [("layer.precision", "conv0", "FLOAT"), ("layer.set_output_type", "conv0", 0, "FLOAT")]
        assert blob["layer_precisions"] == {"conv0": "FLOAT"}
        assert blob["precision_constraints"] == "OBEY_PRECISION_CONSTRAINTS" and not blob["strongly_typed"]
        assert built.info["layer_precisions"] == {"conv0": ["conv0"]}
    else:  # strongly typed: without its Q/DQ the layer runs in the graph's fp32; no constraint exists to set
        assert spec.tensorrt.layer_precisions == {} and "layer_precisions" not in snippet
        assert layer_calls == [] and blob["strongly_typed"] and blob["layer_precisions"] == {}


def test_newest_10x_warns_that_layer_constraints_are_deprecated(monkeypatch, tmp_path):
    install(monkeypatch, NEWEST10)
    int8_folder(tmp_path)
    with pytest.warns(DeprecationWarning, match="10.12"):
        TensorRTBackend().build(tmp_path / "deploy.int8.qdq.onnx", tmp_path / "trt", "int8",
                                TensorRTSettings(layer_precisions={"conv0": "fp32"}))


@pytest.mark.parametrize("version", VERSIONS)
def test_constraints_on_a_strongly_typed_build_are_refused_with_what_to_do(monkeypatch, tmp_path, version):
    install(monkeypatch, version)
    int8_folder(tmp_path)
    settings = TensorRTSettings(layer_precisions={"conv0": "fp32"}, int8_unquantized="fp32")
    if version.startswith("8."):  # TensorRT 8 int8 with int8_unquantized fp32 is weakly typed (INT8 flag only)
        assert trt_plan.weakly_typed("int8", 8, settings)
        return
    with pytest.raises(UsageError, match="strongly typed") as e:
        TensorRTBackend().build(tmp_path / "deploy.int8.qdq.onnx", tmp_path / "trt", "int8", settings)
    assert "int8.qdq.excluded.names" in e.value.fix


@pytest.mark.parametrize("version", ["10.3"])
def test_a_constraint_naming_no_node_is_one_clear_error(monkeypatch, tmp_path, version):
    install(monkeypatch, version)
    int8_folder(tmp_path)
    with pytest.raises(UsageError, match="'conv9', which is no node of deploy.int8.qdq.onnx"):
        TensorRTBackend().build(tmp_path / "deploy.int8.qdq.onnx", tmp_path / "trt", "int8",
                                TensorRTSettings(layer_precisions={"conv9": "fp32"}))
    assert not (tmp_path / "trt" / "model.plan").exists()


def test_without_tensorrt_target_trt_says_it_runs_on_the_device(monkeypatch, tmp_path):
    """`import tensorrt` fails, as on any machine without TensorRT (None in sys.modules makes the import raise)."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(EdgeDeployError, match="debug precision --target trt runs on the device") as e:
        debug.load_artifact(tmp_path, "trt")
    assert "leave --target out" in e.value.fix
    with pytest.raises(UsageError, match="--target openvino"):
        debug.load_artifact(tmp_path, "openvino")


@pytest.mark.parametrize("version", ASKED)
def test_the_selfcheck_runs_the_marked_build_and_a_search_trial(monkeypatch, tmp_path, version):
    """tools/trt_selfcheck.py's engine-level paths as the first GPU that runs it will: the marked build, then one
    search trial (the real precision stage requantizes without the worst layer's Q/DQ; the stand-in builds and runs
    it; its numbers are markers, so the trial's verdict here means nothing)."""
    model = install(monkeypatch, version)
    major = int(version.split(".")[0])
    art = trt_artifact(tmp_path / "art", major)
    result = _quiet(selfcheck().engine_debug, art, samples=4)
    assert result["compared_layers"] == 2 and {w["layer"] for w in result["worst"]} == {"conv0", "relu0"}
    assert ("mark_output", "c") in model.calls
    trial, worst = result["trial"], result["worst"][0]["layer"]
    assert trial["kept_float"] == [worst] and set(trial["tensors"]) == {"pred"}
    held = [c for c in model.calls if c[0] == "layer.precision"]
    if major == 10:  # the trial's engine: the requantized graph with the layer held to fp32
        assert trial["layer_precisions"] == {worst: "fp32"} and held == [("layer.precision", worst, "FLOAT")]
    else:
        assert trial["layer_precisions"] == {} and held == []


def selfcheck():
    import importlib.util

    spec = importlib.util.spec_from_file_location("trt_selfcheck", REPO / "tools" / "trt_selfcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
