"""graph/ir.py and graph/onnxir.py: the passes' view of a model on onnx-ir (constants read and written, rewiring,
the ModelProto boundary) and decode_scope on graphs with omitted optional tensors."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_graph_helpers import Builder, init_value, ops

from edgedeploy.errors import EdgeDeployError
from edgedeploy.graph.fold_affine import fold_affine
from edgedeploy.graph.heads import decode_scope
from edgedeploy.graph.ir import Graph
from edgedeploy.graph.prune import prune_outputs


def test_a_shared_weight_is_written_to_a_fresh_initializer_and_a_sole_one_in_place():
    b = Builder()
    x = b.input("x", ["N", 3, 8, 8])
    w = b.weight("w", b.rng.standard_normal((4, 3, 3, 3)))
    y1 = b.node("Conv", [x, w], pads=[1] * 4)
    y2 = b.node("Conv", [x, w], pads=[1] * 4)
    model = b.model([y1, y2])
    g = Graph(model)
    first, second = g.nodes
    new = g.set_constant_input(first, 1, np.ones((4, 3, 3, 3), np.float32), "w_scaled")
    assert new.name != w and second.inputs[1].name == w  # shared: the other conv keeps the original
    again = g.set_constant_input(first, 1, np.zeros((4, 3, 3, 3), np.float32), "unused")
    assert again is new  # now the sole reader: written in place
    out = g.finish()
    assert np.array_equal(init_value(out, w), init_value(model, w))
    assert np.array_equal(init_value(out, new.name), np.zeros((4, 3, 3, 3), np.float32))


def test_constants_are_read_through_constant_nodes_and_cheap_ops():
    """dynamo's unoptimized bias: Expand(CastLike(0, x), Shape(W)[0:1]) is a constant once read through."""
    b = Builder()
    x = b.input("x", ["N", 3, 8, 8])
    w = b.weight("w", b.rng.standard_normal((4, 3, 1, 1)))
    b.nodes.append(helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.array(0.0, np.float64))))
    zero = b.node("CastLike", ["zero", x])
    b.inits += [numpy_helper.from_array(np.array([0], np.int64), "start"),
                numpy_helper.from_array(np.array([1], np.int64), "end")]
    shape = b.node("Slice", [b.node("Shape", [w]), "start", "end"])
    bias = b.node("Expand", [zero, shape])
    model = b.model([b.node("Conv", [x, w, bias])])
    g = Graph(model, infer_shapes=True)
    conv = g.nodes[-1]
    value = g.constant(conv.inputs[2])
    assert value is not None and value.dtype == np.float32 and np.array_equal(value, np.zeros(4, np.float32))
    assert g.constant(conv.inputs[0]) is None


def test_an_identity_read_inside_a_subgraph_is_bypassed_and_outputs_stay_equal():
    """onnx-ir rewires reads from If branches too, which the former name maps could not."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    flag = helper.make_tensor_value_info("flag", TensorProto.BOOL, [])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])

    def branch(op: str) -> onnx.GraphProto:
        return helper.make_graph([helper.make_node(op, ["relu_id"], [f"{op}_out"])], op,
                                 [], [helper.make_tensor_value_info(f"{op}_out", TensorProto.FLOAT, [2, 3])])

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["relu"]), helper.make_node("Identity", ["relu"], ["relu_id"]),
         helper.make_node("If", ["flag"], ["y"], then_branch=branch("Neg"), else_branch=branch("Sigmoid"))],
        "g", [x, flag], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    out, stats = fold_affine(model)
    assert stats.changes["identities_removed"] == 1 and ops(out)["Identity"] == 0
    onnx.checker.check_model(out)
    x_value = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    for value in (True, False):
        feeds = {"x": x_value, "flag": np.array(value)}
        ref, new = (ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
                    for m in (model, out))
        assert np.array_equal(ref[0], new[0])


def test_a_tensor_that_is_input_and_output_keeps_the_input_description():
    b = Builder()
    x = b.input("x", ["N", 3, 4, 4])
    model = b.model([b.node("Relu", [x])])
    model.graph.output.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4]))
    out, _ = prune_outputs(model)
    assert out.graph.input[0] == model.graph.input[0]
    assert [o.name for o in out.graph.output] == [o.name for o in model.graph.output]


@pytest.mark.parametrize("fault", ["two_writers", "cycle"])
def test_a_graph_onnx_ir_cannot_describe_is_one_edgedeploy_error(fault):
    b = Builder()
    x = b.input("x", ["N", 3])
    a = b.node("Relu", [x])
    c = b.node("Neg", [a])
    model = b.model([c])
    if fault == "two_writers":
        model.graph.node[1].output[0] = a
    else:
        model.graph.node[0].input[0] = c
    with pytest.raises(EdgeDeployError, match="redeclared" if fault == "two_writers" else "cycle"):
        Graph(model)


def test_decode_scope_reads_a_graph_with_omitted_optional_tensors():
    """An LSTM whose unused Y output is cleared ('') and whose sequence_lens is omitted (''): the former name maps
    took '' for one tensor that the LSTM both writes and reads, and failed with a KeyError."""
    hidden = 4
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("W", (1, 4 * hidden, 3)), ("R", (1, 4 * hidden, hidden)))]
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R", "", ""], ["", "h"], hidden_size=hidden),
         helper.make_node("Sigmoid", ["h"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, hidden])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    scope = decode_scope(model)
    assert not scope  # no learned conv head before the sigmoid: not a YOLO decode
