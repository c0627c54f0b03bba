"""The detection-head decode (edgedeploy.graph.heads) on hand-built v8/v11- and v5/v7-style heads, and every int8
route keeping it in float (tests/yolo_graphs.py builds the graphs and lists their decode nodes)."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
import pytest

import yolo_graphs
from edgedeploy.config import Int8Settings, QdqSettings
from edgedeploy.graph.heads import decode_scope
from edgedeploy.precision import qdq
from edgedeploy.precision.calibration import CalibrationSet

GRAPHS = {
    "v8": lambda: yolo_graphs.v8(),
    "v8-seg": lambda: yolo_graphs.v8(seg=4),
    "v8-pose": lambda: yolo_graphs.v8(pose=2),
    "v8-end-to-end": lambda: yolo_graphs.v8(end_to_end=True),
    "v7": lambda: yolo_graphs.v7(),
}


@pytest.mark.parametrize("kind", GRAPHS)
def test_the_scope_is_exactly_the_decode_nodes(kind):
    model, decode = GRAPHS[kind]()
    scope = decode_scope(model)
    assert set(scope.nodes) == decode
    assert scope.outputs == (model.graph.output[0].name,)
    assert bool(scope.dfl_nodes) == kind.startswith("v8")


def test_the_scope_does_not_depend_on_node_names():
    model, decode = yolo_graphs.v8(seg=4)
    opaque, mapping = yolo_graphs.renamed(model)
    assert set(decode_scope(opaque).nodes) == {mapping[n] for n in decode}


def test_a_seg_proto_output_through_silu_is_not_decode():
    model, decode = yolo_graphs.v8(seg=4)
    proto = model.graph.output[1].name
    writer = next(n for n in model.graph.node if proto in n.output)
    assert writer.op_type == "Mul" and writer.name not in decode_scope(model).nodes


def test_a_classifier_tail_is_not_a_decode():
    """Softmax after a Gemm and a per-class scale: arithmetic with a constant, but no sigmoid: nothing found."""
    assert not decode_scope(yolo_graphs.classifier())


def _calibration(n: int = 8) -> CalibrationSet:
    rng = np.random.default_rng(1)
    samples = [{"images": rng.random((1, 3, yolo_graphs.SIZE, yolo_graphs.SIZE), dtype=np.float32)}
               for _ in range(n)]
    sha = hashlib.sha256(b"".join(s["images"].tobytes() for s in samples)).hexdigest()
    return CalibrationSet(samples, [f"random[{i}]" for i in range(n)], sha, "random", "npz", n, 0, 0.0)


def _quantized_inputs(model: onnx.ModelProto, names: set[str]) -> list[str]:
    """Decode nodes that read a DequantizeLinear's output, or whose output a QuantizeLinear reads."""
    producer = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    bad = []
    for n in model.graph.node:
        if n.name not in names:
            continue
        if any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in n.input) \
                or any(r.op_type == "QuantizeLinear" for o in n.output for r in readers.get(o, [])):
            bad.append(n.name)
    return bad


@pytest.mark.parametrize("flavour,method", [("onnxruntime", "ort"), ("tensorrt", "ort"), ("tensorrt", "nncf")])
def test_qdq_flavours_leave_the_decode_without_qdq(tmp_path, flavour, method):
    model, decode = yolo_graphs.v8()
    src = tmp_path / "deploy.onnx"
    onnx.save(model, str(src))
    calib = _calibration()
    keep = list(decode_scope(model).nodes)
    q = QdqSettings(method=method, moving_average=True)
    out = {}
    for label, kept in (("kept", keep), ("quantized", [])):
        out[label] = tmp_path / f"{label}.onnx"
        if method == "ort":
            qdq.quantize_ort(src, out[label], calib, q, flavour, keep_float=kept)
        else:
            qdq.quantize_nncf(src, out[label], calib, Int8Settings(qdq=q), kept)
    dfl = set(decode_scope(model).dfl_nodes)
    assert _quantized_inputs(onnx.load(str(out["kept"])), decode) == []
    # without the scope, the DFL conv is quantized like any conv (so the check above can fail)
    assert set(_quantized_inputs(onnx.load(str(out["quantized"])), decode)) & dfl
    # the learned convs are still int8
    assert qdq.describe(onnx.load(str(out["kept"])))["per_channel_weights"] >= 10


def test_openvino_int8_ignores_the_decode_ops(tmp_path):
    import openvino as ov

    from edgedeploy.precision import openvino_int8 as ovq

    model, decode = yolo_graphs.v8(pose=2)
    src = tmp_path / "deploy.onnx"
    onnx.save(model, str(src))
    keep = {n.name: list(n.output) for n in model.graph.node if n.name in decode}
    ov_names = set(ovq.openvino_names(ov.convert_model(str(src)), keep))
    assert len(ov_names) >= len(decode) - 2  # every decode node has its op (a Split or Reshape may fold away)

    def fake_quantized(qmodel) -> set[str]:
        return {op.get_friendly_name() for op in qmodel.get_ops() if op.get_friendly_name() in ov_names
                and any(i.get_source_output().get_node().get_type_name() == "FakeQuantize" for i in op.inputs())}

    calib = _calibration()
    assert fake_quantized(ovq.quantize_ir(src, calib, Int8Settings(fast_bias_correction=True), keep)) == set()
    plain = ovq.quantize_ir(src, calib, Int8Settings(fast_bias_correction=True))
    assert fake_quantized(plain)  # NNCF quantizes decode ops when not told otherwise
    assert ovq.count_fake_quantize(plain) > 0
