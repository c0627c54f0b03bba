"""The detection sections of report.md / report.html on the demo detector and its eval set: the per-class AP table
is faster-coco-eval's own per-class figures, the PR curves are the curves whose area is the mAP, the confusion
matrix counts every label once, and the images where the artifact and the reference disagree most are drawn."""

from __future__ import annotations

import re

import numpy as np
import pytest

from edgedeploy.numbers import num
from edgedeploy.validate.record import Report

pytestmark = pytest.mark.slow  # the shared INT8 demo build (precision_helpers)


@pytest.fixture(scope="module")
def demo_int8():
    from precision_helpers import built

    out, report = built("openvino", "int8")
    return out, Report.model_validate(report)


def reference_per_class(out) -> dict[str, dict]:
    """faster-coco-eval's per-class table (extended_metrics) for the reference's detections in reference.npz,
    scored here from COCO dicts made in this test."""
    from faster_coco_eval import COCO, COCOeval_faster

    from edgedeploy import arrayfile
    from edgedeploy.tasks import decoders
    from edgedeploy.tasks.decoders.base import DecodeSettings
    from edgedeploy.validate.gate import read_manifest

    _, spec = read_manifest(out)
    with arrayfile.open_npz(out / "reference.npz", "reference", fix="") as data:
        outputs = {k.removeprefix("output."): np.asarray(data[k]) for k in data.files if k.startswith("output.")}
        targets = np.asarray(data["label.targets"])
    det = spec.validation.detection
    decoder = decoders.choose({k: v.shape for k, v in outputs.items()}, spec.validation.num_classes,
                              spec.validation.decoder, None, produces="detections")
    dets = decoder.decode(outputs, DecodeSettings(input_size=(0, 0), num_classes=spec.validation.num_classes,
                                                  conf_thres=det.conf_thres, iou_thres=det.iou_thres,
                                                  max_det=det.max_det))
    classes = sorted({int(c) for c in targets[:, 1]} | {int(c) for d in dets for c in d.classes})
    nc = max(classes) + 1
    gt = {"images": [{"id": i + 1, "width": 0, "height": 0} for i in range(len(dets))],
          "categories": [{"id": c + 1, "name": str(c)} for c in range(nc)],
          "annotations": [{"id": j + 1, "image_id": int(t[0]) + 1, "category_id": int(t[1]) + 1, "iscrowd": 0,
                           "bbox": [float(t[2]), float(t[3]), float(t[4] - t[2]), float(t[5] - t[3])],
                           "area": float((t[4] - t[2]) * (t[5] - t[3]))} for j, t in enumerate(targets)]}
    results = [{"image_id": i + 1, "category_id": int(c) + 1, "score": float(s),
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]}
               for i, d in enumerate(dets) for b, s, c in zip(d.boxes, d.scores, d.classes)]
    coco_gt = COCO(gt)
    ev = COCOeval_faster(coco_gt, coco_gt.loadRes(results), iouType="bbox", print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return {row["class"]: row for row in ev.extended_metrics["class_map"] if row["class"] != "all"}, targets


def test_per_class_ap_table_is_faster_coco_evals(demo_int8):
    out, report = demo_int8
    task = report.task
    expected, _ = reference_per_class(out)
    assert set(expected) == set(task.reference_ap50_per_class) == set(task.ap50_per_class)
    for name, row in expected.items():
        assert task.reference_ap50_per_class[name] == pytest.approx(row["map@50"], abs=1e-9)
        assert task.reference_ap_per_class[name] == pytest.approx(row["map@50:95"], abs=1e-9)
    md = (out / "report.md").read_text()
    for name in expected:  # the table shows those figures, the artifact's beside the reference's
        cells = [num(task.ap50_per_class[name]), num(task.reference_ap50_per_class[name]),
                 num(task.ap_per_class[name]), num(task.reference_ap_per_class[name])]
        assert f"| {name} | " + " | ".join(cells) + " |" in md


def test_pr_curves_are_the_curves_of_the_map(demo_int8):
    out, report = demo_int8
    task = report.task
    pr = task.pr_curve
    assert len(pr.recall) == len(pr.artifact) == len(pr.reference) == 101
    assert np.mean(pr.artifact) == pytest.approx(task.map50, abs=1e-4)  # COCO AP: the mean over 101 recall points
    assert np.mean(pr.reference) == pytest.approx(task.reference_map50, abs=1e-4)
    assert all(a >= b for a, b in zip(pr.artifact, pr.artifact[1:]))  # COCOeval's monotone envelope
    assert pr.recall[50] == 0.5 and pr.recall[90] == 0.9
    md = (out / "report.md").read_text()
    assert (f"openvino int8 {num(pr.artifact[50])} / {num(pr.artifact[80])} / {num(pr.artifact[90])}, reference "
            f"{num(pr.reference[50])} / {num(pr.reference[80])} / {num(pr.reference[90])}.") in md


def test_confusion_matrix_counts_every_label_once(demo_int8):
    out, report = demo_int8
    c = report.task.confusion
    _, targets = reference_per_class(out)
    m = np.asarray(c.matrix)
    nc = len(c.classes) - 1
    assert c.classes[-1] == "background" and m.shape == (nc + 1, nc + 1) and m[nc, nc] == 0
    per_class = np.bincount(targets[:, 1].astype(int), minlength=nc)
    np.testing.assert_array_equal(m[:nc].sum(axis=1), per_class)  # each label once: matched or missed
    false_positives = m[nc].sum()
    assert m.sum() == len(targets) + false_positives
    assert np.trace(m[:nc, :nc]) > 0.8 * len(targets)  # the demo detector finds most objects, as the right class


def test_report_html_draws_the_detection_sections_within_a_bounded_size(demo_int8):
    out, report = demo_int8
    shown = report.task.disagreeing
    assert 0 < len(shown) <= 4
    assert [d.disagreement for d in shown] == sorted((d.disagreement for d in shown), reverse=True)
    page = (out / "report.html").read_text()
    alts = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', page)
    assert alts[alts.index("AP per class"):][:4] == [
        "AP per class", "precision-recall curves, artifact and reference", "confusion matrix",
        "images where the artifact and the reference disagree most"]
    assert len(page) < 3_000_000, len(page)
    md = (out / "report.md").read_text()
    assert "Images where the artifact and the reference disagree most: #" in md
    assert "| label \\ detected | 0 | 1 |" in md  # the demo's 10 classes: the whole matrix
