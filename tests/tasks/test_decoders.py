"""edgedeploy.tasks.decoders: each decoder reads its own layout back to the detections it was built from, refuses
every other decoder's layout (by signature, or by value where two layouts share a signature), and `choose` picks
by signature, refusing a forced decoder that does not fit and listing the candidates when several do."""

from __future__ import annotations

import numpy as np
import pytest

from edgedeploy.errors import UsageError
from edgedeploy.tasks.decoders import DECODERS, choose
from edgedeploy.tasks.decoders.base import DecodeSettings
from edgedeploy.tasks.decoders.nms import nms

NC, SIZE, N = 3, (64, 64), 50
BOXES = np.array([[2.0, 4, 20, 30], [30, 2, 60, 20], [25, 40, 50, 62]])
CLASSES = np.array([0, 2, 1])
SCORES = np.array([0.9, 0.8, 0.7])
KPT = (2, 3)
KEYPOINTS = np.array([[[5, 6, 0.9], [10, 20, 0.8]], [[40, 5, 0.7], [50, 10, 0.6]], [[30, 50, 0.5], [45, 60, 0.9]]])


def cxcywh(b):
    return np.column_stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])


def one_hot_scores(rows=N):
    s = np.zeros((rows, NC))
    s[np.arange(3), CLASSES] = SCORES
    return s


def candidates(rows=N):
    b = np.zeros((rows, 4))
    b[:3] = cxcywh(BOXES)
    b[3:] = [32, 32, 4, 4]
    return b


def objectness():
    p = np.concatenate([candidates(), np.zeros((N, 1)), one_hot_scores()], 1)
    p[:3, 4] = 1.0
    return {"pred": p[None].astype(np.float32)}


def anchor_free():
    return {"output0": np.concatenate([candidates(), one_hot_scores()], 1).T[None].astype(np.float32)}


def end2end():
    rows = np.zeros((10, 6))
    rows[:3] = np.column_stack([BOXES, SCORES, CLASSES])
    return {"output0": rows[None].astype(np.float32)}


def detr():
    boxes = np.full((10, 4), 0.5)
    boxes[:3] = cxcywh(BOXES) / 64
    logits = np.full((10, NC), -20.0)
    logits[np.arange(3), CLASSES] = np.log(SCORES / (1 - SCORES))
    return {"pred_boxes": boxes[None].astype(np.float32), "logits": logits[None].astype(np.float32)}


def boxes_scores():
    b = np.zeros((N, 4))
    b[:3] = BOXES
    b[3:] = [30, 30, 34, 34]
    return {"boxes": b[None].astype(np.float32), "scores": one_hot_scores()[None].astype(np.float32)}


def yolo_seg():
    coef = np.zeros((N, 2))
    coef[:, 0] = 5.0  # prototype 0 is +1 everywhere: each mask is its box
    pred = np.concatenate([candidates(), one_hot_scores(), coef], 1).T[None]
    protos = np.stack([np.ones((16, 16)), -np.ones((16, 16))])[None]
    return {"output0": pred.astype(np.float32), "output1": protos.astype(np.float32)}


def yolo_pose():
    kp = np.zeros((N, 6))
    kp[:3] = KEYPOINTS.reshape(3, 6)
    return {"output0": np.concatenate([candidates(), one_hot_scores(), kp], 1).T[None].astype(np.float32)}


def semantic():
    labels = np.zeros((16, 16), np.int64)
    labels[4:10, 2:8] = 2
    labels[12:, 12:] = 1
    return {"out": np.eye(NC)[labels].transpose(2, 0, 1)[None].astype(np.float32) * 4}


def classification():
    return {"logits": np.array([[0.1, 3.0, -1.0], [2.0, 0.5, 1.0]], np.float32)}


LAYOUTS = {"yolo-objectness": objectness, "yolo-anchor-free": anchor_free, "yolo-end2end": end2end, "detr": detr,
           "boxes-scores": boxes_scores, "yolo-seg": yolo_seg, "yolo-pose": yolo_pose, "semantic-seg": semantic,
           "classification": classification}


def context(name):
    kpt = KPT if name == "yolo-pose" else None
    size = (16, 16) if name == "semantic-seg" else SIZE
    return kpt, DecodeSettings(input_size=size, num_classes=NC, kpt_shape=kpt, max_det=100)


def shapes(outputs):
    return {k: v.shape for k, v in outputs.items()}


def test_every_decoder_has_a_layout():
    assert set(LAYOUTS) == set(DECODERS)


@pytest.mark.parametrize("name", [n for n in LAYOUTS if DECODERS[n].produces == "detections"])
def test_decoder_reads_its_own_layout(name):
    outputs = LAYOUTS[name]()
    kpt, settings = context(name)
    if name not in ("detr", "boxes-scores"):  # these two share a signature (test_ambiguous_signature...)
        assert choose(shapes(outputs), NC, kpt_shape=kpt).name == name
    assert DECODERS[name].refusal(shapes(outputs), NC, kpt) is None
    (dets,) = DECODERS[name].decode(outputs, settings)
    np.testing.assert_allclose(dets.boxes, BOXES, atol=1e-4)
    np.testing.assert_allclose(dets.scores, SCORES, atol=1e-6)
    assert dets.classes.tolist() == CLASSES.tolist()
    if name == "yolo-seg":
        for box, mask in zip(BOXES.astype(int), dets.masks):
            expected = np.zeros(SIZE, bool)
            expected[box[1]:box[3], box[0]:box[2]] = True
            assert (mask == expected).all()
    if name == "yolo-pose":
        np.testing.assert_allclose(dets.keypoints, KEYPOINTS, atol=1e-5)


def test_dense_and_classification_layouts():
    (labels,) = DECODERS["semantic-seg"].decode(semantic(), context("semantic-seg")[1])
    assert labels.labels[5, 3] == 2 and labels.labels[13, 13] == 1 and labels.labels[0, 0] == 0
    first, second = DECODERS["classification"].decode(classification(), context("classification")[1])
    assert first.classes.tolist() == [1, 0, 2] and second.classes.tolist() == [0, 2, 1]


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("decoder", list(DECODERS))
def test_decoder_refuses_every_other_layout(decoder, layout):
    """A decoder given another decoder's outputs says so (a refusal naming the shapes, or a UsageError at decode
    where two layouts share a signature: DETR's normalized boxes + logits and boxes-scores' pixel boxes +
    probabilities) and never returns predictions."""
    if decoder == layout:
        return
    outputs = LAYOUTS[layout]()
    kpt, settings = context(layout)
    why = DECODERS[decoder].refusal(shapes(outputs), NC, kpt)
    if why is not None:
        assert decoder in why and any(str(list(s)) in why for s in shapes(outputs).values()) or "needs" in why
        return
    assert {decoder, layout} == {"detr", "boxes-scores"}
    with pytest.raises(UsageError, match=f"decoder {decoder}: .*do not have this decoder's layout"):
        DECODERS[decoder].decode(outputs, settings)


def test_yolov8_head_is_never_read_as_yolov5():
    """The issue's case: YOLOv8n's (B, 84, 2100) read as (B, N=84, 5+nc=2100) scored mAP 0 and passed."""
    sig = {"output0": (1, 84, 2100)}
    assert choose(sig, 80).name == "yolo-anchor-free"
    assert choose(sig, None).name == "yolo-anchor-free"
    with pytest.raises(UsageError, match=r"yolo-objectness reads \(B, N, 5 \+ nc\) = \(B, N, 85\) for 80 classes, "
                                         r"output0 is \[1, 84, 2100\]"):
        choose(sig, 80, forced="yolo-objectness")
    with pytest.raises(UsageError, match="no decoder reads the model's outputs output0 \\[1, 84, 2100\\] with 81"):
        choose(sig, 81)


def test_ambiguous_signature_lists_the_candidates():
    with pytest.raises(UsageError, match="fit several decoders: detr, boxes-scores"):
        choose(shapes(detr()), NC)
    assert choose(shapes(detr()), NC, forced="detr").name == "detr"
    with pytest.raises(UsageError, match="unknown decoder 'yolo'"):
        choose(shapes(detr()), NC, forced="yolo")


def test_detr_softmax_with_no_object_class():
    out = detr()
    logits = np.full((1, 10, NC + 1), -5.0)
    logits[0, :, -1] = 10.0  # no object
    for q, c in enumerate(CLASSES):
        logits[0, q, c] = 10.0 + q  # beats no-object
    out["logits"] = logits.astype(np.float32)
    (dets,) = DECODERS["detr"].decode(out, context("detr")[1])
    assert sorted(dets.classes[:3].tolist()) == sorted(CLASSES.tolist())
    np.testing.assert_allclose(np.sort(dets.boxes[:3], 0), np.sort(BOXES, 0), atol=1e-4)


def test_boxes_scores_nms_forms():
    settings = context("boxes-scores")[1]
    b = boxes_scores()["boxes"]
    scores = np.zeros((1, NC, N), np.float32)
    scores[0, CLASSES, np.arange(3)] = SCORES
    selected = np.array([[0, c, i] for i, c in enumerate(CLASSES)], np.int64)
    (d,) = DECODERS["boxes-scores"].decode({"boxes": b, "scores": scores, "selected_indices": selected}, settings)
    np.testing.assert_allclose(d.boxes, BOXES)
    efficient = {"num_dets": np.array([[3]]), "det_boxes": np.concatenate([BOXES, np.zeros((7, 4))])[None],
                 "det_scores": np.concatenate([SCORES, np.zeros(7)])[None],
                 "det_classes": np.concatenate([CLASSES, np.zeros(7)])[None]}
    (d,) = DECODERS["boxes-scores"].decode(efficient, settings)
    assert d.classes.tolist() == CLASSES.tolist()
    (d,) = DECODERS["boxes-scores"].decode({"boxes": BOXES, "scores": SCORES, "labels": CLASSES}, settings)
    np.testing.assert_allclose(d.scores, SCORES)
    bad = dict(efficient, det_boxes=np.zeros((1, 10, 5)))
    assert DECODERS["boxes-scores"].refusal(shapes(bad), NC) is not None


def test_nms_is_greedy_and_class_aware():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5, 100).tolist() == [0, 2, 3]
    assert nms(boxes, scores, classes, 0.5, 2).tolist() == [0, 2]
    assert nms(boxes, scores, classes, 0.9, 100).tolist() == [0, 1, 2, 3]


def test_end2end_refuses_non_class_values():
    out = end2end()
    out["output0"][0, 0, 5] = 1.5
    with pytest.raises(UsageError, match="column 5 holds values that are not class indices"):
        DECODERS["yolo-end2end"].decode(out, context("yolo-end2end")[1])
