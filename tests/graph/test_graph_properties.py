"""Property tests: random conv / BN / affine / branch graphs stay output-equal through optimize, and no pass is ever
rolled back on them (a rollback would mean a pass produced a wrong graph)."""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_graph_helpers import Builder, assert_equal, ops

from edgedeploy.graph.optimize import OptimizeSettings, optimize_model

FAST = OptimizeSettings(simplifier="none")
# EDGEDEPLOY_GRAPH_EXAMPLES=1000 for a longer hunt; the default keeps the suite fast.
PROPS = settings(
    max_examples=int(os.environ.get("EDGEDEPLOY_GRAPH_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


@st.composite
def conv_spec(draw, cin: int):
    cout = draw(st.integers(1, 6))
    groups = draw(st.sampled_from([d for d in divisors(cin) if cout % d == 0]))
    k = draw(st.sampled_from([1, 2, 3]))
    pad_mode = draw(st.sampled_from(["same", "zero", "random"]))
    if pad_mode == "same":
        pads = [(k - 1) // 2, (k - 1) // 2, k // 2, k // 2]
    elif pad_mode == "zero":
        pads = [0, 0, 0, 0]
    else:
        pads = draw(st.lists(st.integers(0, k - 1 if k > 1 else 1), min_size=4, max_size=4))
    return {
        "cout": cout,
        "groups": groups,
        "k": k,
        "pads": pads,
        "bias": draw(st.booleans()),
        "stride": draw(st.sampled_from([1, 1, 2])),
    }


AFFINES = ["none", "bn", "mul", "add", "mul_add", "scalar_mul", "sub", "div"]


def affine(b: Builder, x: str, c: int, kind: str, eps: float) -> str:
    r = b.rng
    if kind == "bn":
        return b.bn(x, c, eps=eps)
    if kind in ("mul", "mul_add"):
        x = b.node("Mul", [x, b.weight("m", r.uniform(0.3, 2.0, (1, c, 1, 1)))])
    if kind in ("add", "mul_add"):
        x = b.node("Add", [x, b.weight("a", r.standard_normal((c, 1, 1)))])
    if kind == "scalar_mul":
        x = b.node("Mul", [b.weight("s", np.array(r.uniform(0.3, 2.0))), x])
    if kind == "sub":
        x = b.node("Sub", [x, b.weight("a", r.standard_normal((1, c, 1, 1)))])
    if kind == "div":
        x = b.node("Div", [x, b.weight("d", r.uniform(0.5, 2.0, (1, c, 1, 1)))])
    return x


@PROPS
@given(data=st.data())
def test_random_conv_affine_chains_stay_equal(data):
    cin = data.draw(st.integers(1, 6), label="cin")
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    b = Builder(seed=seed, as_constants=data.draw(st.booleans(), label="paddle"))
    eps = data.draw(st.sampled_from([1e-3, 1e-5]), label="eps")
    x = b.input("x", ["N", cin, 9, 9])
    x = affine(b, x, cin, data.draw(st.sampled_from(AFFINES), label="pre"), eps)  # affine before the first conv
    c1 = data.draw(conv_spec(cin), label="conv1")
    if data.draw(st.booleans(), label="transposed"):
        w = b.weight("wt", b.rng.standard_normal((cin, c1["cout"] // c1["groups"], c1["k"], c1["k"])) * 0.5)
        inputs = [x, w] + ([b.weight("bt", b.rng.standard_normal(c1["cout"]))] if c1["bias"] else [])
        y = b.node("ConvTranspose", inputs, group=c1["groups"], pads=c1["pads"], strides=[c1["stride"]] * 2)
    else:
        y = b.conv(x, cin, c1["cout"], k=c1["k"], groups=c1["groups"], pads=c1["pads"], bias=c1["bias"],
                   strides=[c1["stride"]] * 2)
    outputs = []
    if data.draw(st.booleans(), label="conv1 read elsewhere"):
        outputs.append(b.node("Sigmoid", [y]))
    y = affine(b, y, c1["cout"], data.draw(st.sampled_from(AFFINES), label="after1"), eps)
    if data.draw(st.booleans(), label="relu"):
        y = b.node("Relu", [y])
    y = affine(b, y, c1["cout"], data.draw(st.sampled_from(AFFINES), label="between"), eps)
    c2 = data.draw(conv_spec(c1["cout"]), label="conv2")
    y = b.conv(y, c1["cout"], c2["cout"], k=c2["k"], groups=c2["groups"], pads=c2["pads"], bias=c2["bias"])
    y = affine(b, y, c2["cout"], data.draw(st.sampled_from(AFFINES), label="after2"), eps)
    model = b.model([y] + outputs)

    out, report = optimize_model(model, FAST)
    assert_equal(model, out)
    assert all(p.status in ("applied", "unchanged") for p in report.passes), report.summary()
    assert ops(out)["BatchNormalization"] == 0
    assert ops(out)["Conv"] + ops(out)["ConvTranspose"] == 2


@PROPS
@given(data=st.data())
def test_random_repconv_blocks_merge_to_one_conv(data):
    c = data.draw(st.integers(1, 6), label="channels")
    b = Builder(seed=data.draw(st.integers(0, 2**31 - 1), label="seed"))
    eps = data.draw(st.sampled_from([1e-3, 1e-5]), label="eps")
    x = b.node("Relu", [b.input("x", ["N", c, 8, 8])])
    stride = data.draw(st.sampled_from([1, 1, 2]), label="stride")
    d = data.draw(st.sampled_from([1, 1, 2]), label="dilation")
    terms = []
    for k in data.draw(st.sampled_from([(3, 1), (3,), (1,), (3, 3), (3, 1, 1)]), label="kernels"):
        g = data.draw(st.sampled_from(divisors(c)), label="groups")
        pad = d * (k // 2)
        t = b.conv(x, c, c, k=k, groups=g, bias=data.draw(st.booleans(), label="bias"), pads=[pad] * 4,
                   strides=[stride] * 2, dilations=[d] * 2 if k > 1 else None)
        terms.append(affine(b, t, c, data.draw(st.sampled_from(["none", "bn", "mul_add"]), label="post"), eps))
    if stride == 1:
        ident = data.draw(st.sampled_from(["none", "raw", "bn", "mul_add"]), label="identity")
        if ident != "none":
            terms.append(x if ident == "raw" else affine(b, x, c, ident, eps))
    if len(terms) < 2:
        terms.append(b.conv(x, c, c, k=1, pads=[0] * 4, strides=[stride] * 2))
    order = data.draw(st.permutations(range(len(terms))), label="order")
    terms = [terms[i] for i in order]
    if data.draw(st.booleans(), label="sum node"):
        y = b.node("Sum", terms)
    else:
        y = terms[0]
        for t in terms[1:]:
            y = b.node("Add", [y, t])
    model = b.model([y])

    out, report = optimize_model(model, FAST)
    assert_equal(model, out)
    assert all(p.status in ("applied", "unchanged") for p in report.passes), report.summary()
    assert ops(out) == {"Relu": 1, "Conv": 1}, ops(out)
