"""merge_branches: RepVGG / YOLOv7 RepConv re-parameterisation, each case checked for output equality in ORT."""

from __future__ import annotations

import numpy as np
from test_graph_helpers import Builder, assert_equal, ops

from edgedeploy.graph.fold_affine import fold_affine
from edgedeploy.graph.merge_branches import merge_branches
from edgedeploy.graph.optimize import OptimizeSettings, optimize_model

N = "N"
NO_SIMPLIFY = OptimizeSettings(simplifier="none")


def repconv(c=4, groups=1, identity="bn", stride=1, dilation=1, seed=0):
    """YOLOv7 RepConv: 3×3+BN, 1×1+BN and (optionally) an identity branch, summed by a chain of Adds."""
    b = Builder(seed=seed)
    x = b.node("Relu", [b.input("x", [N, c, 8, 8])], name="pre")
    d = dilation
    c3 = b.conv(x, c, c, k=3, groups=groups, bias=False, strides=[stride] * 2, pads=[d] * 4, dilations=[d] * 2)
    t3 = b.bn(c3, c, eps=1e-3)
    t1 = b.bn(b.conv(x, c, c, k=1, groups=groups, bias=False, strides=[stride] * 2, pads=[0] * 4), c, eps=1e-3)
    y = b.node("Add", [t3, t1])
    if identity == "bn":
        y = b.node("Add", [y, b.bn(x, c, eps=1e-3)])
    elif identity == "raw":
        y = b.node("Add", [y, x])
    return b.model([y])


def test_repconv_three_branches_become_one_conv():
    model = repconv()
    out, report = optimize_model(model, NO_SIMPLIFY)
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}
    assert report.status_of("merge_branches") == ["applied"]


def test_repconv_merges_directly_with_batchnorms_in_place():
    model = repconv()
    out, stats = merge_branches(model)
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}
    assert stats.changes["branches_merged"] == 3


def test_repvgg_raw_identity_branch():
    model = repconv(identity="raw")
    out, _ = merge_branches(fold_affine(model)[0])
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}


def test_grouped_branches_and_identity():
    model = repconv(c=6, groups=3)
    out, _ = merge_branches(fold_affine(model)[0])
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}
    conv = next(n for n in out.graph.node if n.op_type == "Conv")
    assert next(a.i for a in conv.attribute if a.name == "group") == 3


def test_stride_2_without_identity():
    model = repconv(identity=None, stride=2)
    out, _ = merge_branches(fold_affine(model)[0])
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}


def test_dilated_3x3_with_1x1():
    model = repconv(identity="bn", dilation=2)
    out, _ = merge_branches(fold_affine(model)[0])
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}


def test_depthwise_3x3_plus_dense_1x1_merge_at_group_1():
    b = Builder()
    x = b.node("Relu", [b.input("x", [N, 4, 6, 6])])
    y = b.node("Add", [b.conv(x, 4, 4, k=3, groups=4), b.conv(x, 4, 4, k=1)])
    model = b.model([y])
    out, _ = merge_branches(model)
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}


def test_identity_as_1x1_depthwise_conv():
    b = Builder()
    x = b.node("Relu", [b.input("x", [N, 4, 6, 6])])
    y = b.node("Sum", [b.conv(x, 4, 4, k=3), b.conv(x, 4, 4, k=1, groups=4)])
    model = b.model([y])
    out, _ = merge_branches(model)
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}


def test_unrelated_term_stays_as_add():
    b = Builder()
    x = b.node("Relu", [b.input("x", [N, 4, 6, 6])])
    other = b.node("Sigmoid", [x])
    y = b.node("Add", [b.node("Add", [b.conv(x, 4, 4, k=3), other]), b.conv(x, 4, 4, k=1)])
    model = b.model([y])
    out, _ = merge_branches(model)
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Sigmoid": 1, "Conv": 1, "Add": 1}


def test_branches_over_different_inputs_are_not_merged():
    b = Builder()
    x = b.input("x", [N, 4, 6, 6])
    y = b.node("Add", [b.conv(b.node("Relu", [x]), 4, 4, k=3), b.conv(b.node("Sigmoid", [x]), 4, 4, k=1)])
    model = b.model([y])
    out, stats = merge_branches(model)
    assert not stats.changed
    assert ops(out) == ops(model)
    assert_equal(model, out)


def test_conv_read_elsewhere_is_not_merged():
    b = Builder()
    x = b.node("Relu", [b.input("x", [N, 4, 6, 6])])
    c3 = b.conv(x, 4, 4, k=3)
    y = b.node("Add", [c3, b.conv(x, 4, 4, k=1)])
    model = b.model([y, c3])
    out, stats = merge_branches(model)
    assert not stats.changed
    assert ops(out) == ops(model)
    assert_equal(model, out)


def test_off_centre_but_consistent_padding_merges():
    b = Builder()
    x = b.node("Relu", [b.input("x", [N, 2, 6, 6])])
    c3 = b.conv(x, 2, 2, k=(3, 1), pads=[2, 0, 0, 0])  # the 1×1 lines up with this kernel's bottom tap
    c1 = b.conv(x, 2, 2, k=1, pads=[0, 0, 0, 0])
    model = b.model([b.node("Add", [c3, c1])])
    out, _ = merge_branches(model)
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}


def test_padding_that_cannot_line_up_is_not_merged():
    # dilation 2: the 1×1 would have to sit half a dilated tap off the 3×3 grid.
    b = Builder()
    x = b.node("Relu", [b.input("x", [N, 2, 6, 6])])
    c3 = b.conv(x, 2, 2, k=3, pads=[1, 1, 3, 3], dilations=[2, 2])
    c1 = b.conv(x, 2, 2, k=1, pads=[0, 0, 0, 0])
    model = b.model([b.node("Add", [c3, c1])])
    out, stats = merge_branches(model)
    assert_equal(model, out)
    assert ops(out) == ops(model)
    assert any("do not line up" in n for n in stats.notes)


def test_fp16_branches():
    b = Builder(dtype=np.float16)
    x = b.node("Relu", [b.input("x", [N, 4, 6, 6])])
    y = b.node("Add", [b.conv(x, 4, 4, k=3), b.conv(x, 4, 4, k=1)])
    model = b.model([y])
    out, _ = merge_branches(model)
    assert ops(out) == {"Relu": 1, "Conv": 1}
    assert_equal(model, out, tol=3e-3)  # fp16 outputs: the merged kernel rounds once more


def test_sum_under_an_add_of_a_constant_is_merged_and_the_constant_folds_after():
    b = Builder()
    x = b.node("Relu", [b.input("x", [N, 4, 6, 6])])
    s = b.node("Add", [b.conv(x, 4, 4, k=3), b.conv(x, 4, 4, k=1)])
    y = b.node("Add", [s, b.weight("c", b.rng.standard_normal((1, 4, 1, 1)))])
    model = b.model([y])
    merged, _ = merge_branches(model)
    assert ops(merged) == {"Relu": 1, "Conv": 1, "Add": 1}
    out, report = optimize_model(model, NO_SIMPLIFY)
    assert_equal(model, out)
    assert ops(out) == {"Relu": 1, "Conv": 1}
    assert report.status_of("fold_affine") == ["unchanged", "applied"]  # the second run folds what merging exposed
