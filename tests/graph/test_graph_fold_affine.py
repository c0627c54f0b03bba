"""fold_affine: one case per test; each checks ORT output equality (rel-L2 ≤ 1e-5) and the resulting structure."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper
from test_graph_helpers import Builder, assert_equal, init_value, node_named, ops

from edgedeploy.graph.fold_affine import fold_affine

N = "N"  # a dynamic batch dim


def fold(model):
    out, stats = fold_affine(model)
    assert_equal(model, out)
    return out, stats


def conv_bn(bias=True, groups=1, cin=4, cout=6, eps=1e-5, k=3, as_constants=False):
    b = Builder(as_constants=as_constants)
    x = b.input("x", [N, cin, 7, 7])
    c = b.conv(x, cin, cout, k=k, groups=groups, bias=bias, name="conv")
    y = b.bn(c, cout, eps=eps, name="bn")
    return b.model([y])


@pytest.mark.parametrize("bias", [True, False])
def test_bn_after_conv_with_and_without_bias(bias):
    out, stats = fold(conv_bn(bias=bias))
    assert ops(out) == {"Conv": 1}
    assert len(node_named(out, "conv").input) == 3  # a bias was added where there was none
    assert stats.changes["batchnorm_rewritten"] == 1


def test_bn_after_grouped_conv():
    out, _ = fold(conv_bn(groups=2, cin=4, cout=6))
    assert ops(out) == {"Conv": 1}


def test_bn_after_depthwise_conv():
    out, _ = fold(conv_bn(groups=5, cin=5, cout=5))
    assert ops(out) == {"Conv": 1}


@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_bn_epsilon_is_per_node(eps):
    model = conv_bn(eps=eps, cin=3, cout=3, k=1)
    out, _ = fold(model)
    # The folded weight must be exactly W·γ/√(σ²+ε) with this node's ε.
    params = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    bn = node_named(model, "bn")
    gamma, var = params[bn.input[1]], params[bn.input[4]]
    w = params[node_named(model, "conv").input[1]]
    expect = w * (gamma / np.sqrt(var + eps))[:, None, None, None]
    got = init_value(out, node_named(out, "conv").input[1])
    np.testing.assert_allclose(got, expect, rtol=1e-6)


@pytest.mark.parametrize("groups", [1, 2])
def test_bn_after_conv_transpose(groups):
    b = Builder()
    x = b.input("x", [N, 4, 5, 5])
    w = b.weight("w", b.rng.standard_normal((4, 6 // groups, 3, 3)))  # (C_in, C_out/groups, kH, kW)
    bias = b.weight("b", b.rng.standard_normal(6))
    c = b.node("ConvTranspose", [x, w, bias], name="deconv", group=groups, strides=[2, 2], pads=[1, 1, 1, 1])
    y = b.bn(c, 6)
    out, _ = fold(b.model([y]))
    assert ops(out) == {"ConvTranspose": 1}


@pytest.mark.parametrize("trans_b", [0, 1])
def test_bn_after_gemm(trans_b):
    b = Builder()
    x = b.input("x", [N, 5])
    w = b.weight("w", b.rng.standard_normal((7, 5) if trans_b else (5, 7)))
    c = b.weight("c", b.rng.standard_normal(7))
    g = b.node("Gemm", [x, w, c], name="gemm", transB=trans_b, alpha=0.7, beta=1.3)
    y = b.bn(g, 7)
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Gemm": 1}


def test_bn_after_gemm_without_bias():
    b = Builder()
    x = b.input("x", [N, 5])
    g = b.node("Gemm", [x, b.weight("w", b.rng.standard_normal((5, 7)))], name="gemm")
    out, _ = fold(b.model([b.bn(g, 7)]))
    assert ops(out) == {"Gemm": 1}


def test_bn_after_matmul():
    b = Builder()
    x = b.input("x", [N, 5])
    m = b.node("MatMul", [x, b.weight("w", b.rng.standard_normal((5, 7)))], name="mm")
    out, _ = fold(b.model([b.bn(m, 7)]))
    assert ops(out) == {"MatMul": 1, "Add": 1}  # scale in the weight, shift as the bias MatMul lacks


def test_affine_on_last_axis_after_3d_matmul():
    b = Builder()
    x = b.input("x", [N, 3, 5])
    m = b.node("MatMul", [x, b.weight("w", b.rng.standard_normal((5, 7)))])
    y = b.node("Mul", [m, b.weight("s", b.rng.uniform(0.5, 2, 7))])
    out, _ = fold(b.model([y]))
    assert ops(out) == {"MatMul": 1}


def test_add_before_1x1_conv_folds_into_bias():
    b = Builder()
    x = b.input("x", [N, 4, 6, 6])
    a = b.node("Add", [x, b.weight("ia", b.rng.standard_normal((1, 4, 1, 1)))])  # YOLOv7 ImplicitA
    y = b.conv(a, 4, 5, k=1, name="conv")
    out, stats = fold(b.model([y]))
    assert ops(out) == {"Conv": 1}
    assert stats.changes["folded_before_linear"] == 1


def test_add_before_grouped_1x1_conv_without_bias():
    b = Builder()
    x = b.input("x", [N, 4, 6, 6])
    a = b.node("Add", [x, b.weight("ia", b.rng.standard_normal((4, 1, 1)))])
    y = b.conv(a, 4, 6, k=1, groups=2, bias=False)
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Conv": 1}


def test_add_before_unpadded_3x3_conv_folds():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    a = b.node("Add", [x, b.weight("ia", b.rng.standard_normal((1, 3, 1, 1)))])
    y = b.conv(a, 3, 4, k=3, pads=[0, 0, 0, 0])
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Conv": 1}


def test_add_before_padded_3x3_conv_is_not_folded():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    a = b.node("Add", [x, b.weight("ia", b.rng.standard_normal((1, 3, 1, 1)))])
    y = b.conv(a, 3, 4, k=3, name="conv")
    model = b.model([y])
    out, _ = fold(model)
    assert ops(out) == {"Add": 1, "Conv": 1}  # the border would differ: left as it was
    w_name = node_named(model, "conv").input[1]
    np.testing.assert_array_equal(init_value(out, node_named(out, "conv").input[1]), init_value(model, w_name))


def test_mul_before_padded_conv_folds_into_weight():
    b = Builder()
    x = b.input("x", [N, 4, 6, 6])
    m = b.node("Mul", [x, b.weight("m", b.rng.uniform(0.5, 2, (1, 4, 1, 1)))])
    y = b.conv(m, 4, 6, k=3, groups=2)
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Conv": 1}


def test_mul_after_conv_implicit_m():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    c = b.conv(x, 3, 5, k=1)
    y = b.node("Mul", [c, b.weight("im", b.rng.uniform(0.5, 2, (1, 5, 1, 1)))])
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Conv": 1}


@pytest.mark.parametrize("op", ["Add", "Sub", "Div"])
def test_add_sub_div_after_conv(op):
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    c = b.conv(x, 3, 5, k=3)
    y = b.node(op, [c, b.weight("k", b.rng.uniform(0.5, 2, (5, 1, 1)))])
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Conv": 1}


def test_scalar_mul_and_affine_chain_after_conv():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    c = b.conv(x, 3, 5)
    a = b.node("Add", [c, b.weight("t", b.rng.standard_normal((1, 5, 1, 1)))])
    m = b.node("Mul", [a, b.weight("s", np.array(0.5))])
    y = b.node("Mul", [m, b.weight("s2", b.rng.uniform(0.5, 2, (1, 5, 1, 1)))])
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Conv": 1}


def test_conv_output_with_another_consumer_is_not_folded():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    c = b.conv(x, 3, 4, name="conv")
    y = b.bn(c, 4)
    z = b.node("Relu", [c])
    model = b.model([y, z])
    out, stats = fold(model)
    assert ops(out) == {"Conv": 1, "Mul": 1, "Add": 1, "Relu": 1}  # BN became Mul+Add, conv untouched
    w = node_named(model, "conv").input[1]
    np.testing.assert_array_equal(init_value(out, node_named(out, "conv").input[1]), init_value(model, w))
    assert any("remain as Mul/Add" in n for n in stats.notes)


def test_conv_output_that_is_a_graph_output_is_not_folded():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    c = b.conv(x, 3, 4)
    y = b.node("Mul", [c, b.weight("m", b.rng.uniform(0.5, 2, (1, 4, 1, 1)))])
    out, _ = fold(b.model([c, y]))
    assert ops(out) == {"Conv": 1, "Mul": 1}


def test_bn_after_relu_folds_into_following_1x1_conv():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    r = b.node("Relu", [b.conv(x, 3, 4)])
    y = b.conv(b.bn(r, 4), 4, 5, k=1)
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Conv": 2, "Relu": 1}


def test_bn_after_relu_before_padded_conv_becomes_mul_add():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    r = b.node("Relu", [b.conv(x, 3, 4)])
    y = b.conv(b.bn(r, 4, name="bn_after_relu"), 4, 5, k=3)
    out, stats = fold(b.model([y]))
    assert ops(out) == {"Conv": 2, "Relu": 1, "Mul": 1, "Add": 1}
    assert any("bn_after_relu" in n for n in stats.notes)


def test_bn_after_relu_at_graph_end_becomes_mul_add():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    y = b.bn(b.node("Relu", [x]), 3)
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Relu": 1, "Mul": 1, "Add": 1}


def test_weights_as_constant_nodes_paddle_style():
    out, _ = fold(conv_bn(as_constants=True))
    assert ops(out) == {"Conv": 1, "Constant": 2}  # the folded W and b, nothing else left


def test_fp16_weights_are_computed_in_float64_and_written_back_as_fp16():
    b = Builder(dtype=np.float16)
    x = b.input("x", [N, 3, 6, 6])
    model = b.model([b.bn(b.conv(x, 3, 4, k=1, name="conv"), 4, eps=1e-3, name="bn")])
    out, _ = fold_affine(model)
    assert ops(out) == {"Conv": 1}
    w_new = init_value(out, node_named(out, "conv").input[1])
    assert w_new.dtype == np.float16
    p = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    conv, bn = node_named(model, "conv"), node_named(model, "bn")
    s = p[bn.input[1]] / np.sqrt(p[bn.input[4]] + 1e-3)
    np.testing.assert_array_equal(w_new, (p[conv.input[1]] * s[:, None, None, None]).astype(np.float16))
    # fp16 outputs differ by the fp16 rounding of the new weights (~5e-4 relative), not more.
    assert_equal(model, out, tol=3e-3)


def test_shared_weight_is_copied_not_modified():
    b = Builder()
    x = b.input("x", [N, 3, 6, 6])
    w = b.weight("shared_w", b.rng.standard_normal((3, 3, 3, 3)))
    y1 = b.bn(b.conv(x, 3, 3, w=w, name="conv1"), 3)
    y2 = b.conv(x, 3, 3, w=w, name="conv2")
    model = b.model([y1, y2])
    out, _ = fold(model)
    assert ops(out) == {"Conv": 2}
    assert node_named(out, "conv2").input[1] == w
    np.testing.assert_array_equal(init_value(out, w), init_value(model, w))
    assert node_named(out, "conv1").input[1] != w


def test_training_mode_bn_is_left_and_reported():
    b = Builder()
    x = b.input("x", [2, 3, 4, 4])
    y, rm, rv = b.node("BatchNormalization", [x] + b.bn_params(3), n_out=3, name="bn_train", training_mode=1)
    model = b.model([y])
    out, stats = fold(model)
    assert ops(out) == {"BatchNormalization": 1}
    assert any("bn_train" in n and "training" in n for n in stats.notes)


def test_channel_broadcasting_constant_is_not_folded_before_conv():
    # x has 1 channel; the Mul's (1,4,1,1) constant is what makes 4 channels: folding it would be wrong.
    b = Builder()
    x = b.input("x", [N, 1, 6, 6])
    m = b.node("Mul", [x, b.weight("m", b.rng.uniform(0.5, 2, (1, 4, 1, 1)))])
    y = b.conv(m, 4, 2, k=1)
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Mul": 1, "Conv": 1}


def test_mul_and_add_before_gemm_fold():
    b = Builder()
    x = b.input("x", [N, 5])
    m = b.node("Mul", [x, b.weight("m", b.rng.uniform(0.5, 2, 5))])
    a = b.node("Add", [m, b.weight("a", b.rng.standard_normal((1, 5)))])
    w = b.weight("w", b.rng.standard_normal((7, 5)))
    y = b.node("Gemm", [a, w, b.weight("c", b.rng.standard_normal(7))], transB=1, alpha=0.5, beta=2.0)
    out, _ = fold(b.model([y]))
    assert ops(out) == {"Gemm": 1}


def test_input_is_not_mutated():
    model = conv_bn()
    before = model.SerializeToString()
    fold_affine(model)
    assert model.SerializeToString() == before
