"""prune_outputs: drop outputs by name or glob and exactly the nodes/weights only they needed."""

from __future__ import annotations

import numpy as np
import pytest
import onnx
from onnx import helper, numpy_helper
from test_graph_helpers import Builder, assert_equal, ops

from edgedeploy.errors import UsageError
from edgedeploy.graph.prune import prune_outputs


def detector():
    """Shared backbone → lead head `pred`; aux heads `aux_p3`, `aux_p4` with their own weights and Constant nodes."""
    b = Builder()
    x = b.input("x", ["N", 3, 8, 8])
    feat = b.node("Relu", [b.conv(x, 3, 4, name="backbone")], name="backbone_act")
    pred = b.node("Sigmoid", [b.conv(feat, 4, 5, k=1, name="lead")], name="pred_head")
    aux3 = b.conv(feat, 4, 2, k=1, name="aux3_conv")
    two = numpy_helper.from_array(np.float32(2.0))
    b.nodes.append(helper.make_node("Constant", [], ["aux_k"], name="aux_const", value=two))
    aux3 = b.node("Mul", [aux3, "aux_k"], name="aux3_scale")
    aux4 = b.node("MaxPool", [b.conv(feat, 4, 2, k=1, name="aux4_conv")], name="aux4_pool", kernel_shape=[2, 2])
    for name, src in (("pred", pred), ("aux_p3", aux3), ("aux_p4", aux4)):
        b.nodes.append(helper.make_node("Identity", [src], [name], name=f"{name}_out"))
    model = b.model(["pred", "aux_p3", "aux_p4"])
    return onnx.shape_inference.infer_shapes(model)  # value_info for the aux tensors too


AUX_NODES = {"aux3_conv", "aux_const", "aux3_scale", "aux4_conv", "aux4_pool", "aux_p3_out", "aux_p4_out"}


def _check_pruned(model, out):
    assert [o.name for o in out.graph.output] == ["pred"]
    assert {n.name for n in model.graph.node} - {n.name for n in out.graph.node} == AUX_NODES
    used = {i for n in out.graph.node for i in n.input}
    assert all(t.name in used for t in out.graph.initializer)
    assert len(out.graph.initializer) == len(model.graph.initializer) - 4  # two aux convs: weight and bias each
    names = {o for n in out.graph.node for o in n.output}
    assert all(vi.name in names or vi.name in used for vi in out.graph.value_info)
    assert_equal(model, out, tol=0.0)


def test_drop_by_glob():
    model = detector()
    out, stats = prune_outputs(model, drop=["aux*"])
    _check_pruned(model, out)
    assert stats.changes["outputs_removed"] == 2
    assert stats.changes["constant_nodes_removed"] == 1


def test_keep_by_name():
    model = detector()
    out, _ = prune_outputs(model, keep=["pred"])
    _check_pruned(model, out)


def test_drop_by_exact_names():
    model = detector()
    out, _ = prune_outputs(model, drop=["aux_p3", "aux_p4"])
    _check_pruned(model, out)


def test_drop_one_aux_keeps_the_other():
    model = detector()
    out, _ = prune_outputs(model, drop=["aux_p4"])
    assert [o.name for o in out.graph.output] == ["pred", "aux_p3"]
    assert ops(out)["MaxPool"] == 0 and ops(out)["Mul"] == 1
    assert_equal(model, out, tol=0.0)


def test_unknown_keep_name_is_a_usage_error_listing_outputs():
    with pytest.raises(UsageError) as err:
        prune_outputs(detector(), keep=["pred", "boxes"])
    msg = str(err.value)
    assert "'boxes'" in msg and "'pred'" in msg and "'aux_p3'" in msg and "'aux_p4'" in msg


def test_dropping_every_output_is_a_usage_error():
    with pytest.raises(UsageError, match="no output would be left"):
        prune_outputs(detector(), drop=["*"])


def test_nothing_to_prune_is_unchanged():
    model = detector()
    out, stats = prune_outputs(model)
    assert not stats.changed
    assert ops(out) == ops(model)


def test_empty_keep_list_keeps_everything_not_dropped():
    model = detector()  # a config with no keep_outputs passes []
    out, _ = prune_outputs(model, keep=[], drop=["aux*"])
    _check_pruned(model, out)


def test_drop_pattern_matching_nothing_is_noted():
    _, stats = prune_outputs(detector(), drop=["seg*"])
    assert any("seg*" in n for n in stats.notes)
