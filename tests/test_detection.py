"""edgedeploy.tasks.detection: postprocess/NMS and COCO-style mAP (hand cases + faster-coco-eval cross-check)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgedeploy.tasks.detection import (
    box_iou,
    detections_as_targets,
    evaluate_map,
    nms,
    postprocess,
)


def _det(x1, y1, x2, y2, score, cls):
    return [x1, y1, x2, y2, score, cls]


# ------------------------------------------------------------------------------------------- hand-computed AP
def test_perfect_detections_give_one():
    targets = np.array(
        [[0, 1, 2, 2, 20, 22], [0, 3, 30, 30, 50, 55], [1, 1, 5, 5, 25, 30], [2, 7, 0, 0, 10, 12]], np.float32
    )
    dets = [
        np.array([_det(2, 2, 20, 22, 0.9, 1), _det(30, 30, 50, 55, 0.8, 3)], np.float32),
        np.array([_det(5, 5, 25, 30, 0.7, 1)], np.float32),
        np.array([_det(0, 0, 10, 12, 0.6, 7)], np.float32),
    ]
    r = evaluate_map(dets, targets)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map50_95"] == pytest.approx(1.0)
    assert r["ap50_per_class"] == pytest.approx({1: 1.0, 3: 1.0, 7: 1.0})


def test_false_positive_above_true_positive():
    # one ground truth; an unmatched detection (score 0.9) ranks above the true positive (0.8):
    # precision [0, 1/2] at recall [0, 1] -> envelope 1/2 everywhere -> AP = 0.5 at every IoU threshold
    targets = np.array([[0, 0, 10, 10, 30, 30]], np.float32)
    dets = [np.array([_det(40, 40, 60, 60, 0.9, 0), _det(10, 10, 30, 30, 0.8, 0)], np.float32)]
    r = evaluate_map(dets, targets)
    assert r["map50"] == pytest.approx(0.5, abs=1e-12)
    assert r["map50_95"] == pytest.approx(0.5, abs=1e-12)


def test_false_positive_between_two_true_positives():
    # two GT, ranked TP, FP, TP: recall [.5, .5, 1], precision [1, .5, 2/3] -> envelope [1, 2/3, 2/3]
    # 101-point: recall 0.00..0.50 (51 points) -> 1, recall 0.51..1.00 (50 points) -> 2/3
    targets = np.array([[0, 2, 0, 0, 10, 10], [1, 2, 20, 20, 40, 40]], np.float32)
    dets = [
        np.array([_det(0, 0, 10, 10, 0.9, 2), _det(50, 50, 60, 60, 0.8, 2)], np.float32),
        np.array([_det(20, 20, 40, 40, 0.7, 2)], np.float32),
    ]
    expected = (51 * 1.0 + 50 * (2.0 / 3.0)) / 101
    r = evaluate_map(dets, targets)
    assert r["map50"] == pytest.approx(expected, abs=1e-12)
    assert r["map50_95"] == pytest.approx(expected, abs=1e-12)


def test_localisation_counts_per_iou_threshold():
    # IoU 0.72: a true positive at thresholds .50 .55 .60 .65 .70 (5 of 10), a miss above
    targets = np.array([[0, 4, 0, 0, 10, 10]], np.float32)
    dets = [np.array([_det(0, 0, 10, 7.2, 0.5, 4)], np.float32)]
    r = evaluate_map(dets, targets)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map50_95"] == pytest.approx(0.5)


def test_empty_detections_give_zero():
    targets = np.array([[0, 1, 0, 0, 10, 10], [1, 2, 5, 5, 15, 15]], np.float32)
    for dets in ([], [np.zeros((0, 6), np.float32)] * 2):
        r = evaluate_map(dets, targets)
        assert r["map50"] == 0.0 and r["map50_95"] == 0.0
        assert r["ap50_per_class"] == {1: 0.0, 2: 0.0}


def test_class_without_ground_truth_is_ignored_and_wrong_class_is_a_miss():
    targets = np.array([[0, 1, 0, 0, 10, 10]], np.float32)
    # class-5 detection: no class-5 ground truth -> not part of the mean; class 1 found
    r = evaluate_map([np.array([_det(0, 0, 10, 10, 0.9, 5), _det(0, 0, 10, 10, 0.5, 1)], np.float32)], targets)
    assert r["map50"] == pytest.approx(1.0)
    assert set(r["ap50_per_class"]) == {1}
    # only the wrong class -> AP 0 for class 1
    r = evaluate_map([np.array([_det(0, 0, 10, 10, 0.9, 5)], np.float32)], targets)
    assert r["map50"] == 0.0


def test_duplicate_detection_is_a_false_positive():
    # two detections on one GT: the second (lower score) is a FP -> precision [1, .5], recall [1, 1] -> AP 1
    targets = np.array([[0, 0, 0, 0, 10, 10]], np.float32)
    dets = [np.array([_det(0, 0, 10, 10, 0.9, 0), _det(0, 0, 10, 10, 0.8, 0)], np.float32)]
    assert evaluate_map(dets, targets)["map50"] == pytest.approx(1.0)
    # a worse box (IoU 0.62) ranked first: at IoU .50/.55/.60 it is the TP and the exact box a duplicate (AP 1);
    # from .65 up it misses and the exact box matches at rank 2: precision [0, .5] -> AP 0.5
    dets = [np.array([_det(0, 0, 10, 6.2, 0.9, 0), _det(0, 0, 10, 10, 0.8, 0)], np.float32)]
    r = evaluate_map(dets, targets)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map50_95"] == pytest.approx((3 * 1.0 + 7 * 0.5) / 10)


# ------------------------------------------------------------------------------------------- postprocess / NMS
def _pred_row(cx, cy, w, h, obj, cls, nc=10, p=0.9):
    row = np.zeros(5 + nc, np.float32)
    row[:5] = cx, cy, w, h, obj
    row[5 + cls] = p
    return row


def test_postprocess_class_aware_nms_and_scores():
    pred = np.stack(
        [
            _pred_row(20, 20, 10, 10, 0.9, 3),  # kept
            _pred_row(21, 20, 10, 10, 0.8, 3),  # suppressed by the first (same class, IoU ~0.82)
            _pred_row(21, 20, 10, 10, 0.7, 4),  # other class: kept
            _pred_row(50, 50, 8, 8, 0.0005, 1),  # below conf_thres
        ]
    )[None]
    (d,) = postprocess(pred, conf_thres=0.001, iou_thres=0.6)
    assert d.shape == (2, 6) and d.dtype == np.float32
    np.testing.assert_allclose(d[0], [15, 15, 25, 25, 0.9 * 0.9, 3], rtol=1e-6)
    np.testing.assert_allclose(d[1], [16, 15, 26, 25, 0.7 * 0.9, 4], rtol=1e-6)


def test_postprocess_max_det_and_empty():
    rng = np.random.default_rng(0)
    pred = np.zeros((2, 500, 15), np.float32)
    pred[0, :, 0] = rng.uniform(0, 4000, 500)  # spread out: nothing suppressed
    pred[0, :, 1] = 10
    pred[0, :, 2:4] = 4
    pred[0, :, 4] = rng.uniform(0.1, 1, 500)
    pred[0, :, 5] = 1
    out = postprocess(pred, max_det=100)
    assert out[0].shape == (100, 6)
    assert np.all(np.diff(out[0][:, 4]) <= 0)
    assert out[1].shape == (0, 6)


def test_nms_and_iou_basics():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    np.testing.assert_allclose(box_iou(boxes[:1], boxes)[0], [1, 1, 0])
    assert nms(boxes, np.array([0.5, 0.9, 0.1]), 0.5).tolist() == [1, 2]


def test_detections_as_targets():
    dets = [np.array([_det(1, 2, 3, 4, 0.9, 7), _det(5, 6, 7, 8, 0.1, 2)], np.float32), np.zeros((0, 6), np.float32)]
    t = detections_as_targets(dets, score_thres=0.25)
    np.testing.assert_array_equal(t, np.array([[0, 7, 1, 2, 3, 4]], np.float32))
    assert detections_as_targets([], 0.25).shape == (0, 6)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_own_detections_as_targets_score_one(seed):
    rng = np.random.default_rng(seed)
    pred = np.zeros((3, 60, 15), np.float32)
    pred[..., :2] = rng.uniform(0, 64, (3, 60, 2))
    pred[..., 2:4] = rng.uniform(4, 30, (3, 60, 2))
    pred[..., 4:] = rng.uniform(0, 1, (3, 60, 11))
    dets = postprocess(pred, conf_thres=0.01, iou_thres=0.6)
    r = evaluate_map(dets, detections_as_targets(dets, score_thres=0.0))
    if r["num_gt"]:
        assert r["map50"] == pytest.approx(1.0)
        assert r["map50_95"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------- vs faster-coco-eval
def _synthetic_case(seed: int, n_img: int = 40, nc: int = 4):
    rng = np.random.default_rng(seed)
    targets, dets = [], []
    for i in range(n_img):
        d_img = []
        for _ in range(rng.integers(0, 6)):
            c = int(rng.integers(0, nc))
            x1, y1 = rng.uniform(0, 50, 2)
            w, h = rng.uniform(4, 30, 2)
            targets.append([i, c, x1, y1, x1 + w, y1 + h])
            for _ in range(rng.integers(0, 3)):  # 0-2 noisy detections of this object (duplicates included)
                jit = rng.normal(0, 0.15, 4) * np.array([w, h, w, h])
                cc = c if rng.random() < 0.85 else int(rng.integers(0, nc))
                d_img.append([x1 + jit[0], y1 + jit[1], x1 + w + jit[2], y1 + h + jit[3], rng.random(), cc])
        for _ in range(rng.integers(0, 4)):  # background false positives
            x1, y1 = rng.uniform(0, 50, 2)
            w, h = rng.uniform(4, 30, 2)
            d_img.append([x1, y1, x1 + w, y1 + h, rng.random() * 0.8, int(rng.integers(0, nc))])
        d = np.asarray(d_img, np.float64).reshape(-1, 6)
        d[:, 2:4] = np.maximum(d[:, 2:4], d[:, 0:2] + 0.5)
        dets.append(d)
    return dets, np.asarray(targets, np.float64).reshape(-1, 6)


def _coco_reference(dets, targets, n_img):
    from faster_coco_eval import COCO, COCOeval_faster

    cats = sorted({int(c) for c in targets[:, 1]} | {int(d[5]) for dd in dets for d in dd})
    gt = {
        "images": [{"id": i + 1, "width": 64, "height": 64} for i in range(n_img)],
        "categories": [{"id": c + 1, "name": str(c)} for c in cats],
        "annotations": [
            {
                "id": k + 1,
                "image_id": int(t[0]) + 1,
                "category_id": int(t[1]) + 1,
                "bbox": [float(t[2]), float(t[3]), float(t[4] - t[2]), float(t[5] - t[3])],
                "area": float((t[4] - t[2]) * (t[5] - t[3])),
                "iscrowd": 0,
            }
            for k, t in enumerate(targets)
        ],
    }
    res = [
        {
            "image_id": i + 1,
            "category_id": int(d[5]) + 1,
            "bbox": [float(d[0]), float(d[1]), float(d[2] - d[0]), float(d[3] - d[1])],
            "score": float(d[4]),
        }
        for i, dd in enumerate(dets)
        for d in dd
    ]
    coco_gt = COCO(gt)
    coco_dt = coco_gt.loadRes(res)
    ev = COCOeval_faster(coco_gt, coco_dt, iouType="bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return float(ev.stats[1]), float(ev.stats[0])  # AP50, AP50:95 (area all, maxDets 100)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_matches_faster_coco_eval(seed):
    dets, targets = _synthetic_case(seed)
    ref50, ref = _coco_reference(dets, targets, len(dets))
    r = evaluate_map(dets, targets)
    assert 0.05 < r["map50"] < 0.99  # a non-trivial case
    assert r["map50"] == pytest.approx(ref50, abs=1e-6)
    assert r["map50_95"] == pytest.approx(ref, abs=1e-6)
