"""Property tests on malformed graphs: a valid random conv / BN / RepConv / Gemm graph with one or two faults put in
(a read nobody produces, a dangling output, a cycle, two producers of one tensor, a Conv weight of the wrong rank,
BN vectors of the wrong length, a missing or mistyped or empty initializer, no nodes, an output that is an input, an
unknown op or domain, no or odd opsets, attributes of the wrong kind) through each pass and through optimize_model.

Each pass returns a model or raises EdgeDeployError (UsageError included), nothing else, within a time limit; a model
that passed the ONNX checker is not refused (but for a UsageError such as "no output left") and comes out passing
it and, where ONNX Runtime runs the input, computing the same outputs.
optimize_model refuses a model that fails the checker with one UsageError line, and otherwise gives such a result.

EDGEDEPLOY_GRAPH_EXAMPLES=1000 for a longer hunt; the default keeps the suite fast."""

from __future__ import annotations

import os
import signal
from contextlib import contextmanager

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from test_graph_helpers import Builder

from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.graph.fold_affine import fold_affine
from edgedeploy.graph.merge_branches import merge_branches
from edgedeploy.graph.optimize import OptimizeSettings, optimize_model
from edgedeploy.graph.prune import prune_outputs
from edgedeploy.graph.verify import compare_models

PROPS = settings(max_examples=int(os.environ.get("EDGEDEPLOY_GRAPH_EXAMPLES", "40")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
LIMIT_S = 60  # one pass or one optimize run on a graph of a dozen nodes takes well under a second
PASSES = {"prune": prune_outputs, "fold_affine": fold_affine, "merge_branches": merge_branches}
FAULTS = ["dangling_input", "dangling_output", "cycle", "duplicate_output", "conv_weight_rank", "bn_channels",
          "missing_initializer", "initializer_dtype", "initializer_data", "empty_graph", "output_is_input",
          "unknown_op", "opset", "attribute"]


@contextmanager
def time_limit(what: str):
    def stop(*_):
        raise TimeoutError(f"{what} ran past {LIMIT_S} s")

    old = signal.signal(signal.SIGALRM, stop)
    signal.alarm(LIMIT_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def base_graph(draw) -> onnx.ModelProto:
    """conv → BN/affine → RepConv (3×3 + 1×1 + identity, with BN) → optional Gemm head: something for every pass."""
    c = draw(st.integers(1, 4), label="channels")
    b = Builder(seed=draw(st.integers(0, 2**16), label="seed"), as_constants=draw(st.booleans(), label="constants"))
    x = b.input("x", ["N", 3, 6, 6])
    y = b.conv(x, 3, c, k=3)
    y = b.bn(y, c) if draw(st.booleans(), label="bn") else b.node("Mul", [y, b.weight("m", np.full((1, c, 1, 1), 1.5))])
    y = b.node("Relu", [y])
    branches = [b.bn(b.conv(y, c, c, k=3, bias=False), c), b.bn(b.conv(y, c, c, k=1, pads=[0] * 4, bias=False), c)]
    if draw(st.booleans(), label="identity"):
        branches.append(b.bn(y, c))
    y = b.node("Sum", branches) if draw(st.booleans(), label="sum") else b.node("Add", branches[:2])
    outputs = [y]
    if draw(st.booleans(), label="gemm head"):
        flat = b.node("Flatten", [b.node("GlobalAveragePool", [y])])
        head = b.node("Gemm", [flat, b.weight("g", b.rng.standard_normal((2, c))), b.weight("gb", np.zeros(2))],
                      transB=1)
        outputs.append(b.node("Add", [head, b.weight("ga", np.ones(2))]))
    return b.model(outputs)


def inject(draw, m: onnx.ModelProto, fault: str) -> None:
    """Put `fault` into `m` in place (a fault with nothing to act on leaves the model as it is)."""
    g = m.graph
    nodes, inits = list(g.node), list(g.initializer)

    def pick(seq, label):
        return seq[draw(st.integers(0, len(seq) - 1), label=label)] if seq else None

    node = pick(nodes, "node")
    if fault == "dangling_input" and node is not None and node.input:
        node.input[draw(st.integers(0, len(node.input) - 1), label="input")] = "nobody_makes_this"
    elif fault == "dangling_output":
        g.output.append(helper.make_tensor_value_info("nobody_makes_this", TensorProto.FLOAT, [None, None, None]))
    elif fault == "cycle" and node is not None and node.input:
        later = nodes[draw(st.integers(nodes.index(node), len(nodes) - 1), label="later")]
        node.input[0] = later.output[0]
    elif fault == "duplicate_output" and len(nodes) > 1:
        other = pick([n for n in nodes if n is not node], "other")
        node.output[0] = other.output[0]
    elif fault == "conv_weight_rank":
        _replace_weight(draw, m, "Conv", 1, lambda w: w.reshape(w.shape[:2] + (-1,)) if draw(st.booleans())
                        else w[..., None])
    elif fault == "bn_channels":
        _replace_weight(draw, m, "BatchNormalization", draw(st.integers(1, 4), label="param"),
                        lambda v: np.concatenate([v, v[:1]]) if draw(st.booleans()) else v[:0])
    elif fault == "missing_initializer" and inits:
        g.initializer.remove(pick(inits, "initializer"))
    elif fault == "initializer_dtype" and inits:
        t = pick(inits, "initializer")
        dtype = draw(st.sampled_from([np.float64, np.float16, np.int64, np.int32, np.bool_]), label="dtype")
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(dtype), t.name))
    elif fault == "initializer_data" and inits:
        t = pick(inits, "initializer")
        t.dims.append(draw(st.integers(0, 3), label="extra dim"))  # data no longer matches dims
    elif fault == "empty_graph":
        del g.node[:]
        if draw(st.booleans(), label="no outputs"):
            del g.output[:]
    elif fault == "output_is_input":
        if draw(st.booleans(), label="add") or not g.output:
            g.output.append(g.input[0])
        else:
            g.output[0].name = g.input[0].name
    elif fault == "unknown_op" and node is not None:
        if draw(st.booleans(), label="op or domain"):
            node.op_type = "NoSuchOp"
        else:
            node.domain = "com.example.unknown"
            if draw(st.booleans(), label="import the domain"):
                m.opset_import.append(helper.make_opsetid(node.domain, 1))
    elif fault == "opset":
        version = draw(st.sampled_from([None, -1, 0, 1, 7, 9, 999]), label="opset")
        del m.opset_import[:]
        if version is not None:
            m.opset_import.append(helper.make_opsetid("", version))
    elif fault == "attribute" and node is not None:
        name = draw(st.sampled_from(["group", "pads", "strides", "epsilon", "kernel_shape", "dilations", "transB",
                                     "auto_pad"]), label="attribute")
        value = draw(st.sampled_from([0, -1, 3, [1], [0, 0, 0, 0, 0, 0], [2, 2], "SAME_UPPER", "junk", 1e-3, [0.5]]),
                     label="value")
        for i, a in enumerate(node.attribute):
            if a.name == name:
                del node.attribute[i]
                break
        node.attribute.append(helper.make_attribute(name, value))


def _replace_weight(draw, m: onnx.ModelProto, op: str, index: int, change) -> None:
    """Change input `index` of one `op` node, an initializer or a Constant node."""
    targets = [n for n in m.graph.node if n.op_type == op and len(n.input) > index]
    if not targets:
        return
    name = targets[draw(st.integers(0, len(targets) - 1), label=op)].input[index]
    for t in m.graph.initializer:
        if t.name == name:
            t.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(t)), name))
            return
    for n in m.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            value = change(numpy_helper.to_array(n.attribute[0].t))
            del n.attribute[:]
            n.attribute.append(helper.make_attribute("value", numpy_helper.from_array(value)))
            return


@st.composite
def malformed(draw) -> tuple[onnx.ModelProto, list[str]]:
    m = base_graph(draw)
    faults = draw(st.lists(st.sampled_from(FAULTS), min_size=1, max_size=2), label="faults")
    for fault in sorted(faults, key=lambda f: f == "initializer_data"):  # others read initializers: corrupt last
        inject(draw, m, fault)
    return m, faults


def passes_checker(m: onnx.ModelProto) -> bool:
    try:
        onnx.checker.check_model(m)
    except Exception:  # noqa: BLE001 - the checker raises ValidationError and, for odd protos, others
        return False
    return True


def runs(m: onnx.ModelProto) -> bool:
    try:
        compare_models(m, m, samples=1)
    except EdgeDeployError:
        return False
    return True


def assert_sound(before: onnx.ModelProto, after: onnx.ModelProto, checked: bool, runnable: bool) -> None:
    if checked:
        onnx.checker.check_model(after)
    if runnable:
        errors = compare_models(before, after, samples=1)
        assert all(e["rel_l2"] <= 1e-5 for e in errors.values()), errors


@PROPS
@given(case=malformed())
def test_passes_on_malformed_graphs_return_a_sound_model_or_a_clean_error(case):
    model, faults = case
    snapshot = model.SerializeToString()
    checked = passes_checker(model)
    runnable = checked and runs(model)
    for name, fn in PASSES.items():
        try:
            with time_limit(name):
                out, _ = fn(model)
        except EdgeDeployError as e:
            assert "\n" not in e.message and e.where, (name, faults, e.message)
            assert not checked or isinstance(e, UsageError), (name, faults, e.message)  # refused a valid graph
            continue
        assert_sound(model, out, checked, runnable)
    assert model.SerializeToString() == snapshot  # no pass touched its input


@PROPS
@given(case=malformed())
def test_optimize_refuses_or_keeps_a_malformed_graph_equal(case):
    model, faults = case
    checked = passes_checker(model)
    try:
        with time_limit("optimize_model"):
            out, report = optimize_model(model, OptimizeSettings(simplifier="none"))
    except UsageError as e:  # the checker's verdict, or (valid model) nothing to optimize, e.g. no outputs
        assert "\n" not in e.message and e.where, e.message
        assert not checked or "checker" not in e.message, (faults, e.message)
        return
    assert checked, (faults, report.summary())
    assert_sound(model, out, True, runs(model))


@pytest.mark.parametrize("simplifier", ["onnxsim", "onnxslim"])
@settings(PROPS, max_examples=max(1, PROPS.max_examples // 8))
@given(case=malformed())
def test_simplifiers_on_checker_valid_faulty_graphs(simplifier, case):
    """The third-party simplifiers see only what passed the checker; whatever they do, the result is sound."""
    model, _ = case
    if not passes_checker(model):
        return
    with time_limit(simplifier):
        out, _ = optimize_model(model, OptimizeSettings(simplifier=simplifier, passes=("simplify",)))
    assert_sound(model, out, True, runs(model))
