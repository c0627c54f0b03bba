"""Tensor comparators (incl. NaN/Inf), classification metrics, and threshold checks with per-output overrides."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgedeploy.config import TensorThresholds, Thresholds
from edgedeploy.tasks import classification
from edgedeploy.validate.gate import output_thresholds, threshold_checks
from edgedeploy.validate.metrics import compare, compare_outputs


# --------------------------------------------------------------------------------------------- comparators
def test_hand_computed_metrics():
    ref = np.array([3.0, 4.0], np.float32)  # ||ref|| = 5
    cand = np.array([3.0, 4.5], np.float32)  # diff (0, 0.5)
    m = compare(ref, cand)
    assert m["max_abs"] == 0.5 and m["mean_abs"] == 0.25
    assert m["rel_l2"] == pytest.approx(0.1)
    assert m["snr_db"] == pytest.approx(20.0)
    assert m["cosine"] == pytest.approx((9 + 18) / (5 * np.hypot(3, 4.5)))
    assert m["finite"] and m["nan_count"] == 0 and m["inf_count"] == 0
    assert m["abs_error_quantiles"][-1] == 0.5


def test_identical_and_all_zero():
    z = np.zeros((2, 3), np.float32)
    m = compare(z, z)
    assert m["rel_l2"] == 0.0 and m["cosine"] == 1.0 and m["max_abs"] == 0.0
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    assert compare(x, x.copy())["rel_l2"] == 0.0


def test_float16_candidate_is_compared_in_float64():
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32)
    m = compare(x, x.astype(np.float16))
    assert 1e-5 < m["rel_l2"] < 1e-3  # fp16 rounding, ~2^-11 relative
    assert m["snr_db"] > 60


def test_nan_and_inf_are_counted_and_metrics_stay_finite():
    ref = np.arange(10, dtype=np.float32)
    cand = ref.copy()
    cand[2] = np.nan
    cand[5] = np.inf
    cand[7] = -np.inf
    m = compare(ref, cand)
    assert m["nan_count"] == 1 and m["inf_count"] == 2 and not m["finite"]
    assert m["rel_l2"] == 0.0 and m["max_abs"] == 0.0  # computed over the 7 finite positions
    json.dumps(m, allow_nan=False)  # report.json stays strict JSON
    checks = threshold_checks(Thresholds(max_rel_l2=1e-5), {"y": m}, None)
    finite = next(c for c in checks if c["name"] == "y.finite")
    assert not finite["passed"] and finite["status"] == "fail" and finite["value"] == 3
    assert finite["message"] == "y has 1 NaN and 2 Inf of 10 values"


def test_nonfinite_reference_is_reported():
    ref = np.array([1.0, np.nan, 2.0])
    m = compare(ref, np.array([1.0, 5.0, 2.0]))
    assert m["reference_nonfinite"] == 1 and m["finite"] and m["rel_l2"] == 0.0


def test_shape_mismatch_and_missing_output():
    with pytest.raises(ValueError, match="differs"):
        compare(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="no output"):
        compare_outputs({"a": np.zeros(2)}, {"b": np.zeros(2)}, ["b"])


# --------------------------------------------------------------------------------------------- thresholds
def test_per_output_override_only_changes_what_it_sets():
    budget = Thresholds(max_rel_l2=1e-5, min_cosine=0.999,
                        outputs={"boxes": TensorThresholds(max_rel_l2=1e-3, max_abs=0.5)})
    boxes = output_thresholds(budget, "boxes")
    assert boxes.max_rel_l2 == 1e-3 and boxes.max_abs == 0.5 and boxes.min_cosine == 0.999
    assert output_thresholds(budget, "scores").max_rel_l2 == 1e-5
    good = {"rel_l2": 5e-4, "max_abs": 0.1, "cosine": 0.9999, "snr_db": 60.0, "nan_count": 0, "inf_count": 0}
    checks = {c["name"]: c for c in threshold_checks(budget, {"boxes": good, "scores": good}, None)}
    assert checks["boxes.rel_l2"]["passed"] and checks["boxes.max_abs"]["passed"]
    assert not checks["scores.rel_l2"]["passed"]
    assert checks["scores.rel_l2"]["message"] == "scores.rel_l2 = 0.0005 exceeds limit <= 1e-05"
    assert "scores.max_abs" not in checks


def test_task_checks_and_missing_labels_are_skipped():
    budget = Thresholds(max_top1_drop=0.01, min_top1_agreement=0.99, max_map50_drop=0.01)
    task = {"kind": "classification", "top1_agreement": 0.98}
    checks = {c["name"]: c for c in threshold_checks(budget, {}, task)}
    assert not checks["top1_agreement"]["passed"]
    assert checks["top1_drop"]["status"] == "skip" and "no labels" in checks["top1_drop"]["message"]
    assert "map50_drop" not in checks  # not a detection task


# --------------------------------------------------------------------------------------------- classification
def test_classification_hand_case():
    ref = np.array([[5, 1, 0], [0, 5, 1], [1, 0, 5], [5, 4, 0]], np.float32)
    cand = np.array([[5, 1, 0], [0, 5, 1], [5, 0, 1], [4, 5, 0]], np.float32)  # rows 2, 3 flip
    labels = np.array([0, 1, 2, 1])
    out = classification.evaluate(ref, cand, labels)
    assert out["top1_agreement"] == 0.5
    assert out["top5_agreement"] == 1.0  # k = 3 classes: everything is in the top 3
    assert out["reference_top1"] == 0.75 and out["top1"] == 0.75  # ref wrong on row 3, cand wrong on row 2
    assert out["top1_drop"] == 0.0
    assert out["disagreeing_samples"] == [2, 3]
    assert "top1" not in classification.evaluate(ref, cand)


def test_classification_matches_sklearn_topk():
    from sklearn.metrics import top_k_accuracy_score

    rng = np.random.default_rng(3)
    scores = rng.standard_normal((500, 20))
    labels = rng.integers(0, 20, 500)
    for k in (1, 5):
        assert classification.accuracy(scores, labels, k) == pytest.approx(
            top_k_accuracy_score(labels, scores, k=k, labels=np.arange(20)))
    noisy = scores + 0.3 * rng.standard_normal(scores.shape)
    ref_top1 = scores.argmax(1)
    assert classification.agreement(scores, noisy, 1) == pytest.approx((noisy.argmax(1) == ref_top1).mean())
    assert classification.agreement(scores, noisy, 5) == pytest.approx(
        top_k_accuracy_score(ref_top1, noisy, k=5, labels=np.arange(20)))


def test_classification_nan_rows_do_not_win():
    ref = np.array([[0.1, 0.9], [0.8, 0.2]])
    cand = np.array([[np.nan, 0.9], [np.nan, np.nan]])
    assert classification.topk(cand, 1)[:, 0].tolist() == [1, 0]
    assert classification.agreement(ref, cand) == 1.0


def test_label_count_mismatch():
    with pytest.raises(ValueError, match="labels"):
        classification.accuracy(np.zeros((3, 4)), np.zeros(2))
