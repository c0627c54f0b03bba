"""TensorRT 8.5/8.6's ONNX parser reads operators up to opset 17 (onnx-tensorrt docs/operators.md on 8.5-GA and
8.6-GA) and misreads newer ones without a word (its Reduce* importers take `axes` from the attribute only), so a
TensorRT 8 build gives the parser the graph rewritten to opset 17, checked on ONNX Runtime first; TensorRT 10 and 11
parse the opset-18 graph as it is. Run on the conformance stand-ins, which record the graph the parser was given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from trt_standin import install, surface_versions
from trt_standin.models import feeds, marker, opset18_model

from edgedeploy.backends import trt_manifest
from edgedeploy.backends.tensorrt import TensorRTBackend, load_plan
from edgedeploy.config import TensorRTSettings
from edgedeploy.errors import EdgeDeployError
from edgedeploy.graph import downgrade

VERSIONS = surface_versions()
TRT8 = [v for v in VERSIONS if v.startswith("8.")]
NEWER = [v for v in VERSIONS if not v.startswith("8.")]


def build(folder: Path):
    return TensorRTBackend().build(folder / "deploy.onnx", folder / "trt", "fp32", TensorRTSettings())


def _reduce_mean(model: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.op_type == "ReduceMean")


def test_committed_surfaces_include_tensorrt_8():
    assert TRT8 == ["8.5", "8.6"] and NEWER


@pytest.mark.parametrize("version", TRT8)
def test_tensorrt8_parses_the_graph_rewritten_to_opset17(monkeypatch, tmp_path, version):
    standin = install(monkeypatch, version)
    original = onnx.load(opset18_model(tmp_path / "deploy.onnx"))
    built = build(tmp_path)
    (parsed,) = standin.parsed
    assert downgrade.default_opset(parsed) == 17
    mean = _reduce_mean(parsed)
    assert list(mean.input) == ["q"] and [a.ints for a in mean.attribute if a.name == "axes"] == [[2, 3]]
    assert {a.name for a in mean.attribute} == {"axes", "keepdims"}  # no noop_with_empty_axes: ReduceMean-13 lacks it
    assert list(_reduce_mean(original).input) == ["q", "mean_axes"]  # the deploy graph itself is left alone
    assert built.info["onnx_converted"] == {**built.info["onnx_converted"], "from": "deploy.onnx", "from_opset": 18,
                                            "to_opset": 17, "file": "deploy.opset17.onnx"}
    converted = tmp_path / "trt" / "deploy.opset17.onnx"
    m, _ = trt_manifest.read_manifest(built.artifact)
    assert m["onnx"] == converted.name  # the manifest hashes the file the parser read
    x = feeds(3)  # the rewrite computes what the original does, on ONNX Runtime
    want = ort.InferenceSession(str(tmp_path / "deploy.onnx")).run(None, x)[0]
    got = ort.InferenceSession(str(converted)).run(None, x)[0]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    runner = load_plan(built.artifact)
    np.testing.assert_allclose(runner.run(x)["pred"][:, 0, 0, 0], marker(x["images"]), rtol=1e-5)
    runner.close()


@pytest.mark.parametrize("version", NEWER)
def test_tensorrt10_and_11_parse_the_opset18_graph_as_it_is(monkeypatch, tmp_path, version):
    standin = install(monkeypatch, version)
    original = onnx.load(opset18_model(tmp_path / "deploy.onnx"))
    built = build(tmp_path)
    (parsed,) = standin.parsed
    assert parsed == original and downgrade.default_opset(parsed) == 18
    assert "onnx_converted" not in built.info and not (tmp_path / "trt" / "deploy.opset17.onnx").exists()


@pytest.mark.parametrize(("refused", "node", "op"), [("pad_axes", "pad_hw", "Pad"),
                                                     ("resize_antialias", "resize_aa", "Resize")])
def test_an_op_without_an_opset17_form_is_one_line_naming_it(monkeypatch, tmp_path, refused, node, op):
    standin = install(monkeypatch, TRT8[-1])
    opset18_model(tmp_path / "deploy.onnx", refused=refused)
    with pytest.raises(EdgeDeployError) as e:
        build(tmp_path)
    message = e.value.message
    assert f"node {node!r} ({op})" in message and "TensorRT 10 (JetPack 6.1+)" in message and "\n" not in message
    assert not standin.parsed and not (tmp_path / "trt" / "model.plan").exists()
    assert not (tmp_path / "trt" / "deploy.opset17.onnx").exists()


def test_a_rewrite_that_changes_the_outputs_is_refused(monkeypatch, tmp_path):
    """What TensorRT 8's parser computes from the unconverted ReduceMean (axes dropped: the mean of everything)
    stands for a wrong rewrite: the ONNX Runtime check catches it before the parser sees it."""
    standin = install(monkeypatch, TRT8[0])
    opset18_model(tmp_path / "deploy.onnx")
    convert = downgrade.downgrade_opset

    def drops_axes(model, target, **kw):
        out = convert(model, target, **kw)
        mean = _reduce_mean(out)
        kept = [a for a in mean.attribute if a.name != "axes"]
        del mean.attribute[:]
        mean.attribute.extend(kept)
        return out

    monkeypatch.setattr(downgrade, "downgrade_opset", drops_axes)
    with pytest.raises(EdgeDeployError, match="rewrite of the graph computes different outputs on ONNX Runtime: "
                                              "output 'pred'"):
        build(tmp_path)
    assert not standin.parsed and not (tmp_path / "trt" / "model.plan").exists()


def test_split_by_count_on_an_unknown_dimension_is_refused():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", "channels"])
    ys = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in ("y0", "y1")]
    split = onnx.helper.make_node("Split", ["x"], ["y0", "y1"], name="split_c", axis=1, num_outputs=2)
    model = onnx.helper.make_model(onnx.helper.make_graph([split], "g", [x], ys),
                                   opset_imports=[onnx.helper.make_opsetid("", 18)])
    with pytest.raises(EdgeDeployError, match=r"node 'split_c' \(Split\): a Split with num_outputs on a dimension "):
        downgrade.downgrade_opset(model, 17, fix="build with TensorRT 10", where="deploy.onnx")


def test_a_reduce_that_is_a_noop_at_opset18_is_refused():
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)
    mean = onnx.helper.make_node("ReduceMean", ["x"], ["y"], name="mean_none", noop_with_empty_axes=1)
    model = onnx.helper.make_model(onnx.helper.make_graph([mean], "g", [x], [y]),
                                   opset_imports=[onnx.helper.make_opsetid("", 18)])
    with pytest.raises(EdgeDeployError, match=r"node 'mean_none' \(ReduceMean\): a ReduceMean with "
                                              "noop_with_empty_axes=1 and no axes"):
        downgrade.downgrade_opset(model, 17, fix="build with TensorRT 10", where="deploy.onnx")
