"""simplify: onnxsim / onnxslim behind verification; the smallest verified result wins, failures are discarded."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from test_graph_helpers import Builder, assert_equal

from edgedeploy.errors import UsageError
import edgedeploy.graph.simplify as simplify_mod
from edgedeploy.graph.simplify import simplify


def foldable():
    """Constant arithmetic and a shape computation that a simplifier folds away, around real work."""
    b = Builder()
    x = b.input("x", [2, 3, 4, 4])
    k = b.node("Add", [b.weight("k1", np.array(1.5)), b.weight("k2", np.array(0.5))])
    k = b.node("Mul", [k, b.weight("k3", np.array(2.0))])
    y = b.node("Mul", [b.conv(x, 3, 4), k])
    shape = b.node("Shape", [y])
    first = b.node("Gather", [shape, b.weight("i0", np.array([0]))], axis=0)
    b.inits[-1] = numpy_helper.from_array(np.array([0], np.int64), b.inits[-1].name)
    minus1 = b.weight("m1", np.array([-1]))
    b.inits[-1] = numpy_helper.from_array(np.array([-1], np.int64), minus1)
    new_shape = b.node("Concat", [first, minus1], axis=0)
    z = b.node("Reshape", [y, new_shape])
    return b.model([z])


def test_auto_keeps_the_smallest_verified_graph():
    model = foldable()
    out, stats = simplify(model, "auto")
    assert_equal(model, out)
    verified = [c for c in stats.candidates if c.status == "verified"]
    names = {c.name for c in stats.candidates}
    assert names >= {"constants", "constants+onnxsim", "constants+onnxslim", "constants+onnxsim+onnxslim"}
    assert verified, stats.to_dict()
    assert len(out.graph.node) == min(c.nodes for c in verified) < len(model.graph.node)
    assert stats.chosen in {c.name for c in verified}
    assert stats.changed


@pytest.mark.parametrize("tool", ["onnxsim", "onnxslim"])
def test_single_simplifier(tool):
    model = foldable()
    out, stats = simplify(model, tool)
    assert_equal(model, out)
    assert len(out.graph.node) < len(model.graph.node)
    assert all(tool in c.name or c.name == "constants" for c in stats.candidates)


def test_none_returns_an_equal_copy():
    model = foldable()
    out, stats = simplify(model, "none")
    assert out is not model and out == model and not stats.changed


def test_a_simplifier_that_raises_is_reported_and_discarded(monkeypatch):
    def broken(model):
        raise RuntimeError("segfault-ish failure in the tool")

    monkeypatch.setitem(simplify_mod.RUNNERS, "onnxsim", broken)
    model = foldable()
    out, stats = simplify(model, "auto")
    assert_equal(model, out)
    failed = {c.name: c for c in stats.candidates if c.status == "failed"}
    assert "segfault-ish" in failed["constants+onnxsim"].reason
    skipped = {c.name: c for c in stats.candidates if c.status == "skipped"}
    assert "was not run" in skipped["constants+onnxsim+onnxslim"].reason  # the chain on top of it
    assert "onnxsim" not in stats.chosen.split("+")[1:2]
    assert any("segfault-ish" in n for n in stats.notes)


def test_a_simplifier_that_changes_outputs_is_rejected(monkeypatch):
    def wrong(model):  # "simplifies" to fewer nodes but gets a weight wrong
        out = simplify_mod.run_onnxslim(model)
        conv = next(n for n in out.graph.node if n.op_type == "Conv")
        for t in out.graph.initializer:
            if t.name == conv.input[1]:
                t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * 1.01, t.name))
        return out

    monkeypatch.setitem(simplify_mod.RUNNERS, "onnxslim", wrong)
    model = foldable()
    out, stats = simplify(model, "onnxslim")
    rejected = [c for c in stats.candidates if c.status == "rejected"]
    assert rejected and "rel_l2" in rejected[0].reason
    assert stats.chosen != "constants+onnxslim"
    assert_equal(model, out)


def test_models_over_2gb_are_refused(monkeypatch):
    monkeypatch.setattr(simplify_mod, "model_bytes", lambda m: 3 * 2**30)
    with pytest.raises(UsageError, match="2 GiB"):
        simplify(foldable(), "auto")


def test_external_data_not_loaded_is_refused():
    model = foldable()
    t = model.graph.initializer[0]
    t.data_location = onnx.TensorProto.EXTERNAL
    with pytest.raises(UsageError, match="external data"):
        simplify(model, "auto")


def test_unknown_simplifier_is_a_usage_error():
    with pytest.raises(UsageError, match="onnxsim"):
        simplify(foldable(), "polygraphy")
