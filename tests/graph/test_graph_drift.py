"""Tolerances calibrated to the graph's own fp32 noise: exact rewrites of a deep training-structured detector pass
where a fixed 1e-5 would roll them back, and planted wrong rewrites are still rolled back on deep and shallow graphs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from test_graph_helpers import Builder
from test_graph_optimize import small_detector

import edgedeploy.graph.optimize as optimize_mod
from edgedeploy.graph.fold_affine import fold_affine
from edgedeploy.graph.optimize import OptimizeSettings, optimize_model
from edgedeploy.graph.verify import Reference, Tolerance, perturb_ulp

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import corpus_nets  # noqa: E402
import planted_rewrites  # noqa: E402

FOLD_ONLY = OptimizeSettings(passes=("fold_affine",), simplifier="none")


@pytest.fixture(scope="module")
def deep(tmp_path_factory) -> onnx.ModelProto:
    """The issue's case: a 100+-conv detector with trained-like BN statistics, exported by the TorchScript exporter
    without folding; random N(0, 1) inputs drive its activations to ~1e3."""
    path = tmp_path_factory.mktemp("deep") / "deep.onnx"
    corpus_nets.export(corpus_nets.build("deep-detector", calibrated=True), "deep-detector", "torchscript", path)
    model = onnx.load(str(path))
    assert sum(n.op_type == "Conv" for n in model.graph.node) >= 100
    assert sum(n.op_type == "BatchNormalization" for n in model.graph.node) >= 90
    return model


def test_exact_fold_of_a_deep_graph_is_applied_where_a_fixed_tolerance_would_refuse_it(deep):
    out, report = optimize_model(deep, FOLD_ONLY)
    fold = report.passes[0]
    assert fold.status == "applied", fold.reason
    assert sum(n.op_type == "BatchNormalization" for n in out.graph.node) == 0
    assert max(e["rel_l2"] for e in fold.errors.values()) > 1e-5  # the old fixed limit would have rolled it back
    assert all(e["rel_l2"] <= e["limit_rel_l2"] for e in fold.errors.values())


@pytest.mark.parametrize("plant", list(planted_rewrites.PLANTS))
def test_planted_wrong_rewrites_are_rolled_back_on_the_deep_graph(deep, plant, monkeypatch):
    _plant_and_expect_rollback(deep, plant, monkeypatch)


@pytest.mark.parametrize("plant", list(planted_rewrites.PLANTS))
def test_planted_wrong_rewrites_are_rolled_back_on_a_shallow_graph(plant, monkeypatch):
    _plant_and_expect_rollback(small_detector(), plant, monkeypatch)


def _plant_and_expect_rollback(model: onnx.ModelProto, plant: str, monkeypatch) -> None:
    wrong = planted_rewrites.PLANTS[plant](model)
    assert wrong is not None, f"nothing to plant {plant!r} in"
    monkeypatch.setitem(optimize_mod.PASSES, "fold_affine", lambda m, s, check: (wrong, _Changed()))
    _, report = optimize_model(model, FOLD_ONLY)
    fold = report.passes[0]
    assert fold.status == "rolled_back", f"{plant} was accepted: {fold.errors}"
    assert "beyond tolerance" in fold.reason


class _Changed:
    changed = True

    def to_dict(self):
        return {}


def test_drift_and_limits_are_recorded_in_the_report(deep):
    _, report = optimize_model(deep, FOLD_ONLY)
    d = json.loads(json.dumps(report.to_dict()))
    v = d["verification"]
    assert v["input_sets"] == ["normal seed 0", "uniform seed 1"]
    assert v["tolerance"]["k"] == 8.0 and v["tolerance"]["rel_l2"] == 1e-5
    pred = v["drift"]["pred"]
    assert set(pred) == set(v["input_sets"])
    for entry in pred.values():
        assert entry["drift_rel_l2"] > 0
        assert entry["limit_rel_l2"] == pytest.approx(max(1e-5, 8 * entry["drift_rel_l2"]))
    fold = d["passes"][0]["errors"]["pred"]
    assert {"rel_l2", "drift_rel_l2", "limit_rel_l2", "limit_max_abs", "inputs", "sets"} <= set(fold)
    assert d["errors"]["pred"]["rel_l2"] == fold["rel_l2"]  # the deployed graph's error vs the input model


def test_a_shallow_graph_keeps_the_floor():
    ref = Reference.measure(small_detector())
    for per_set in ref.drift_table().values():
        for entry in per_set.values():
            assert entry["drift_rel_l2"] < 1e-6 and entry["limit_rel_l2"] == 1e-5


def test_ulp_perturbation_moves_every_float_by_exactly_one_ulp():
    x = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    ids = np.arange(5, dtype=np.int64)
    moved = perturb_ulp({"x": x, "ids": ids})
    steps = np.abs(moved["x"].view(np.int32).astype(np.int64) - x.view(np.int32).astype(np.int64))
    assert np.all(steps == 1)
    assert 0.4 < np.mean(moved["x"] > x) < 0.6  # up or down at random
    np.testing.assert_array_equal(moved["ids"], ids)


def test_an_output_no_input_set_can_check_finely_is_held_to_the_cap_and_reported():
    # sin(1e8·x): a one-ulp change of x moves the output by O(1), so rel-L2 cannot check it finely on any input
    def model_with(scale: float) -> onnx.ModelProto:
        b = Builder()
        x = b.input("x", ["N", 64])
        y = b.node("Sin", [b.node("Mul", [x, b.weight("k", np.array(1e8))])])
        return b.model([b.node("Mul", [y, b.weight("s", np.array(scale))])])

    ref = Reference.measure(model_with(1.0))
    assert ref.warnings() and "--inputs" in ref.warnings()[0]
    errors, bad = ref.check(model_with(1.0))
    assert not bad and errors[ref.output_names[0]]["limit_rel_l2"] == 0.01
    _, bad = ref.check(model_with(1.5))
    assert bad and "> 0.01" in bad[0]


def test_tolerance_limits():
    t = Tolerance()
    assert t.limits({"rel_l2": 1e-9, "max_abs": 0.0}, 1.0, half=False) == (1e-5, 1e-4)
    assert t.limits({"rel_l2": 1e-4, "max_abs": 1.0}, 10.0, half=False) == (8e-4, 8.0)
    assert t.limits({"rel_l2": 1e-2, "max_abs": 0.0}, 1.0, half=False)[0] is None  # above the cap
    assert t.limits({"rel_l2": 0.0, "max_abs": 0.0}, 1.0, half=True) == (5e-3, float("inf"))


def test_a_pass_result_that_does_not_run_is_rolled_back(monkeypatch):
    def broken(model, settings, check):
        out, stats = fold_affine(model)
        out.graph.node[0].op_type = "Reshape"  # checker-valid, but ORT cannot run it on these inputs
        return out, stats

    monkeypatch.setitem(optimize_mod.PASSES, "fold_affine", broken)
    model = small_detector()
    _, report = optimize_model(model, FOLD_ONLY)
    assert report.passes[0].status == "rolled_back"


def test_given_inputs_of_the_wrong_kind_are_refused():
    from edgedeploy.errors import EdgeDeployError

    model = small_detector()
    with pytest.raises(EdgeDeployError, match="not an input of the model"):
        Reference.measure(model, {"image": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(EdgeDeployError, match="is int64"):
        Reference.measure(model, {"images": np.zeros((1, 3, 8, 8), np.int64)})
    ref = Reference.measure(model, {"images": np.zeros((1, 3, 8, 8), np.float64)})  # float64 cast to float32
    assert ref.sets[-1].feeds["images"].dtype == np.float32


def test_fp16_outputs_keep_their_floor():
    b = Builder(dtype=np.float16)
    x = b.input("x", [2, 3])
    model = b.model([b.node("Mul", [x, b.weight("s", np.array(2.0))])])
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.FLOAT16
    ref = Reference.measure(model)
    entry = next(iter(ref.drift_table().values()))
    assert all(e["limit_rel_l2"] == pytest.approx(max(5e-3, 8 * e["drift_rel_l2"])) for e in entry.values())
    assert all(e["limit_max_abs"] == float("inf") for e in entry.values())
    assert helper.tensor_dtype_to_np_dtype(model.graph.output[0].type.tensor_type.elem_type) == np.float16
