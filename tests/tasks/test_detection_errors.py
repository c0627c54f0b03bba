"""Where detections go wrong (edgedeploy.tasks.metrics.errors), on hand-made boxes: the confusion matrix counts
every label once and every unmatched confident detection as background, the disagreement of two models' detections
is 0 only when they agree, and the report's short form of a large matrix lists its largest errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgedeploy.data.base import Annotations
from edgedeploy.tasks.decoders.base import Detections
from edgedeploy.tasks.detection import Confusion, confusion_blocks
from edgedeploy.tasks.metrics import errors


def dets(rows) -> Detections:
    a = np.asarray(rows, np.float64).reshape(-1, 6)
    return Detections(a[:, :4], a[:, 4], a[:, 5].astype(np.int64))


def test_confusion_matrix_on_hand_made_boxes():
    truth = [Annotations(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0, 1])),
             Annotations(np.array([[0, 0, 10, 10]], float), np.array([1]))]
    found = [dets([[0, 0, 10, 10, 0.9, 0],  # right
                   [20, 20, 30, 31, 0.8, 0],  # right place, wrong class
                   [50, 50, 60, 60, 0.7, 1],  # on nothing: a false positive
                   [0, 0, 10, 10, 0.1, 1]]),  # below the score threshold: not counted
             dets([])]  # the label of image 2 missed
    m = errors.confusion_matrix(found, truth, 2, score_thres=0.25)
    np.testing.assert_array_equal(m, [[1, 0, 0], [1, 0, 1], [0, 1, 0]])  # rows: label 0, label 1, background
    assert m.sum() == 3 + 1  # labels + false positives


def test_disagreement_is_zero_only_for_the_same_detections():
    a = dets([[0, 0, 10, 10, 0.9, 0], [20, 20, 30, 30, 0.8, 1]])
    assert errors.disagreement(a, a, 0.25) == 0
    moved = dets([[0, 0, 10, 12, 0.9, 0], [20, 20, 30, 30, 0.8, 0]])  # one box moved, one class changed
    assert errors.disagreement(a, moved, 0.25) == pytest.approx((1 - 100 / 120) + 2)
    ranked = errors.most_disagreeing([a, moved, a], [a, a, dets([])], 0.25, 4)
    assert [i for i, _ in ranked] == [1, 2]  # image 0 agrees and is left out


def test_a_large_confusion_matrix_is_summarized_by_its_largest_errors():
    names = [f"c{i}" for i in range(30)] + ["background"]
    m = np.diag(np.full(31, 5))
    m[3, 7], m[30, 2], m[4, 30] = 9, 4, 2
    text, (header, rows) = confusion_blocks(Confusion(classes=names, score_thres=0.25, iou_thres=0.5,
                                                      matrix=m.tolist()))
    assert "The 3 largest of its 30 classes' errors" in text
    assert header == ["label", "detected", "count"]
    assert rows == [["c3", "c7", "9"], ["background", "c2", "4"], ["c4", "background", "2"]]


def test_disagreeing_images_carry_both_models_confident_boxes_and_the_labels():
    a = dets([[0, 0, 10, 10, 0.9, 0], [5, 5, 9, 9, 0.1, 1]])  # the second is below the score threshold
    b = dets([[0, 0, 10, 10, 0.8, 1]])
    truth = [Annotations(np.array([[0, 0, 10, 10]], float), np.array([1])), Annotations(np.zeros((0, 4)), np.zeros(0))]
    shown = errors.disagreeing_images([a, a], [b, a], truth, 0.25, 4)
    assert shown == [{"image": 0, "disagreement": 2.0, "artifact": [[0.0, 0.0, 10.0, 10.0, 0.9, 0]],
                      "reference": [[0.0, 0.0, 10.0, 10.0, 0.8, 1]], "labels": [[1, 0.0, 0.0, 10.0, 10.0]]}]
