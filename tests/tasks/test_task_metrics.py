"""Task metrics: COCO mAP through faster-coco-eval (bbox, segm, keypoints), the bootstrap matcher that equals it,
semantic mIoU, results files re-scored independently; and the bundled demo validated from npz, COCO JSON and a YOLO
folder made from its eval set, all giving its mAP@0.5 of 0.9345."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dataset_helpers import write_coco, write_yolo
from edgedeploy.config import demo_spec_path, load_spec
from edgedeploy.data.base import Annotations
from edgedeploy.demo.model import build_demo
from edgedeploy.preprocess import preprocess
from edgedeploy.tasks.decoders.base import Detections
from edgedeploy.tasks.metrics import bootstrap, coco, files, semantic
from edgedeploy.tasks.detection import evaluate_map, postprocess


def synthetic(seed, n_img=40, nc=4, crowd=False):
    rng = np.random.default_rng(seed)
    anns, dets = [], []
    for _ in range(n_img):
        gt, cls, d_rows = [], [], []
        for _ in range(rng.integers(0, 6)):
            c = int(rng.integers(0, nc))
            x1, y1 = rng.uniform(0, 50, 2)
            w, h = rng.uniform(4, 30, 2)
            gt.append([x1, y1, x1 + w, y1 + h])
            cls.append(c)
            for _ in range(rng.integers(0, 3)):
                jit = rng.normal(0, 0.15, 4) * np.array([w, h, w, h])
                cc = c if rng.random() < 0.85 else int(rng.integers(0, nc))
                d_rows.append([x1 + jit[0], y1 + jit[1], x1 + w + jit[2], y1 + h + jit[3], rng.random(), cc])
        for _ in range(rng.integers(0, 4)):
            x1, y1 = rng.uniform(0, 50, 2)
            d_rows.append([x1, y1, x1 + rng.uniform(4, 30), y1 + rng.uniform(4, 30), rng.random() * 0.8,
                           int(rng.integers(0, nc))])
        d = np.asarray(d_rows, np.float64).reshape(-1, 6)
        d[:, 2:4] = np.maximum(d[:, 2:4], d[:, 0:2] + 0.5)
        flags = rng.random(len(cls)) < 0.2 if crowd else np.zeros(len(cls), bool)
        anns.append(Annotations(np.asarray(gt).reshape(-1, 4), np.asarray(cls, np.int64), iscrowd=flags))
        dets.append(Detections(d[:, :4], d[:, 4], d[:, 5].astype(np.int64)))
    return anns, dets


@pytest.mark.parametrize("seed, crowd", [(0, False), (1, False), (2, True), (3, True), (4, True)])
def test_bootstrap_matcher_is_coco(seed, crowd):
    """With every image weighted once, the bootstrap's own accumulation equals faster-coco-eval to 1e-6 (crowd
    regions included), so its intervals are intervals of COCO's figure."""
    anns, dets = synthetic(seed, crowd=crowd)
    names = ["a", "b", "c", "d"]
    gt = coco.ground_truth(anns, [(80, 80)] * len(anns), names)
    lib = coco.evaluate(gt, coco.results(dets, range(1, len(anns) + 1), [1, 2, 3, 4]), "bbox")
    own50, own = bootstrap.mean_ap(bootstrap.match_all(dets, anns, 4), np.ones(len(anns)))
    assert 0.05 < lib["map50"] < 0.99
    assert own50 == pytest.approx(lib["map50"], abs=1e-6)
    assert own == pytest.approx(lib["map50_95"], abs=1e-6)


def test_drop_interval_covers_the_drop():
    anns, dets = synthetic(7, n_img=60)
    worse = [Detections(d.boxes + 1.5, d.scores, d.classes) for d in dets]
    ref, art = bootstrap.match_all(dets, anns, 4), bootstrap.match_all(worse, anns, 4)
    ones = np.ones(len(anns))
    drop = np.subtract(bootstrap.mean_ap(ref, ones), bootstrap.mean_ap(art, ones))
    ci = bootstrap.drop_interval(ref, art, len(anns), resamples=100)
    assert ci["map50_95_drop_ci95"][0] < drop[1] < ci["map50_95_drop_ci95"][1]
    assert ci["map50_95_drop_ci95"][0] > 0  # shifted boxes are clearly worse at the strict IoU thresholds
    assert ci["map50_95_ci95"][0] < bootstrap.mean_ap(art, ones)[1] < ci["map50_95_ci95"][1]
    assert bootstrap.drop_interval(ref, ref, len(anns), resamples=20)["map50_drop_ci95"] == [0.0, 0.0]


def test_segm_and_keypoints_through_the_library():
    box = np.array([[10.0, 10, 30, 40]])
    poly = [np.array([[10.0, 10], [30, 10], [30, 40], [10, 40]])]
    kps = np.array([[[12.0, 12, 2], [20, 30, 2], [28, 38, 2]]])
    ann = Annotations(box, np.array([0]), polygons=[poly], keypoints=kps, iscrowd=np.array([False]))
    gt = coco.ground_truth([ann], [(50, 50)], ["person"])
    mask = np.zeros((1, 50, 50), bool)
    mask[0, 10:40, 10:30] = True
    det = Detections(box, np.array([0.9]), np.array([0]), keypoints=kps)
    rle = [coco.encode_masks(mask)]
    assert coco.evaluate(gt, coco.results([det], [1], [1], rle), "segm")["map50_95"] == pytest.approx(1.0)
    assert coco.evaluate(gt, coco.results([det], [1], [1]), "keypoints")["map50_95"] == pytest.approx(1.0)
    half = mask.copy()
    half[0, 25:] = False
    low = coco.evaluate(gt, coco.results([det], [1], [1], [coco.encode_masks(half)]), "segm")
    assert low["map50"] == 1.0 and low["map50_95"] < 0.5  # IoU 0.5: a hit at .50 only
    assert coco.evaluate(gt, [], "bbox") == {"map50_95": 0.0, "map50": 0.0, "ap_per_class": {"person": 0.0},
                                             "ap50_per_class": {"person": 0.0}, "pr50": [0.0] * 101}
    curve = coco.evaluate(gt, coco.results([det], [1], [1]), "bbox")["pr50"]  # the one box found: precision 1
    assert curve == [1.0] * 101


def test_semantic_confusion_and_miou():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 2]])
    m = semantic.confusion(truth, pred, 3)
    assert m.tolist() == [[3, 1, 0], [0, 3, 0], [0, 0, 0]]
    s = semantic.scores(m, ["bg", "road", "car"])
    assert s["iou_per_class"] == {"bg": 0.75, "road": 0.75}
    assert s["miou"] == 0.75 and s["pixel_accuracy"] == pytest.approx(6 / 7)


def test_written_results_rescore_independently(tmp_path):
    from faster_coco_eval import COCO, COCOeval_faster

    anns, dets = synthetic(3)
    names = ["a", "b", "c", "d"]
    gt = coco.ground_truth(anns, [(80, 80)] * len(anns), names)
    ours = coco.evaluate(gt, coco.results(dets, range(1, 41), [1, 2, 3, 4]), "bbox")
    files.write_coco_results(tmp_path / "predictions.json", coco.results(dets, range(1, 41), [1, 2, 3, 4]))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    coco_gt = COCO(str(tmp_path / "gt.json"))
    ev = COCOeval_faster(coco_gt, coco_gt.loadRes(str(tmp_path / "predictions.json")), iouType="bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ev.stats[0] == ours["map50_95"] and ev.stats[1] == ours["map50"]
    files.write_yolo_txt(tmp_path / "labels", ["a/img1.png"], dets[:1], [(80, 80)])
    lines = (tmp_path / "labels" / "a" / "img1.txt").read_text().splitlines()
    assert len(lines) == len(dets[0]) and len(lines[0].split()) == 6


def demo_runner():
    model = build_demo()
    model.load_state_dict(torch.load(demo_spec_path().parent / "weights.pt", weights_only=True))
    model.eval()

    def run(feeds):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # called from the prefetching process: one thread beats oversubscribed cores
        try:
            with torch.no_grad():
                return {"pred": model(torch.from_numpy(feeds["images"])).numpy()}
        finally:
            torch.set_num_threads(threads)

    return run


@pytest.mark.slow
def test_demo_from_npz_coco_and_yolo_gives_its_map(tmp_path):
    """The acceptance case: the demo's eval set as npz, as COCO JSON and as a YOLO folder (PNG images, so pixels are
    exact), read and scored as the build reads and scores it, gives the same mAP to 1e-9, and that is the demo's
    mAP@0.5 of 0.9345 scored today's way."""
    spec = load_spec(demo_spec_path())
    with np.load(demo_spec_path().parent / "eval.npz") as d:
        images, targets = d["images"], d["targets"]
    run = demo_runner()
    today = evaluate_map(postprocess(run({"images": preprocess(images, spec.preprocess)})["pred"]), targets)
    names = [str(i) for i in range(10)]
    sources = {"npz": None, "coco": write_coco(tmp_path / "coco", images, targets, names),
               "yolo": write_yolo(tmp_path / "yolo", images, targets, names)}
    from edgedeploy.preprocess import load_validation_set
    from edgedeploy.validate.evaluate import task_metrics

    scores = {}
    for name, source in sources.items():
        data = load_validation_set(spec.model_copy(update={"validation": spec.validation.model_copy(
            update={"data": source, "bootstrap": 0})})) if name != "npz" else load_validation_set(spec)
        reference = run(data.inputs)
        scores[name] = task_metrics(spec.validation.model_copy(update={"bootstrap": 0}), reference, reference,
                                    data.targets, None, data.class_names, (64, 64))
        assert scores[name]["decoder"] == "yolo-objectness"
    assert round(today["map50"], 4) == 0.9345
    for name, s in scores.items():
        assert s["map50"] == pytest.approx(today["map50"], abs=1e-9), name
        assert s["map50_95"] == pytest.approx(today["map50_95"], abs=1e-9), name
        assert s["map50_vs_reference"] == pytest.approx(1.0) and s["map50_drop"] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("form", ["coco", "yolo"])
def test_demo_validation_set_from_a_dataset(tmp_path, form):
    """`validation.data` naming a COCO JSON or a YOLO folder made from the demo's eval set: the same inputs and
    labels as the npz (PNG images), and the build's task metric gives mAP@0.5 0.9345 from them."""
    from edgedeploy.preprocess import load_validation_set
    from edgedeploy.validate.evaluate import task_metrics

    spec = load_spec(demo_spec_path())
    with np.load(demo_spec_path().parent / "eval.npz") as d:
        images, targets = d["images"], d["targets"]
    names = [str(i) for i in range(10)]
    path = (write_coco(tmp_path, images, targets, names) if form == "coco"
            else write_yolo(tmp_path, images, targets, names))
    npz = load_validation_set(spec)
    data = load_validation_set(spec.model_copy(update={"validation": spec.validation.model_copy(
        update={"data": path})}))
    np.testing.assert_array_equal(data.inputs["images"], npz.inputs["images"])
    np.testing.assert_allclose(data.targets, npz.targets, atol=1e-4)
    assert data.class_names == names
    reference = demo_runner()(npz.inputs)
    task = task_metrics(spec.validation, reference, reference, data.targets, None, data.class_names, (64, 64))
    assert task["decoder"] == "yolo-objectness" and round(task["map50"], 4) == 0.9345
    assert task["map50_drop"] == 0.0 and task["map50_drop_ci95"] == [0.0, 0.0]


def test_yolov8_layout_at_the_gate_decodes_or_refuses():
    """The issue's case through the build's task metric: a (B, 84, N) output is read as YOLOv8's anchor-free head
    (a detection where its box is), and forcing the YOLOv5 reading is one UsageError naming the shapes."""
    from edgedeploy.config import ValidationSettings
    from edgedeploy.errors import UsageError
    from edgedeploy.validate.evaluate import task_metrics

    pred = np.zeros((2, 84, 2100), np.float32)
    pred[:, :4] = np.array([320, 320, 20, 20], np.float32)[None, :, None]
    pred[0, :4, 7] = [100, 120, 40, 60]
    pred[0, 4 + 34, 7] = 0.9
    targets = np.array([[0, 34, 80, 90, 120, 150]], np.float32)
    settings = ValidationSettings(task="detection", num_classes=80)
    task = task_metrics(settings, {"output0": pred}, {"output0": pred}, targets, None, None, (640, 640))
    assert task["decoder"] == "yolo-anchor-free" and task["map50"] == pytest.approx(1.0)
    with pytest.raises(UsageError, match=r"yolo-objectness reads \(B, N, 5 \+ nc\) = \(B, N, 85\) for 80 classes"):
        task_metrics(settings.model_copy(update={"decoder": "yolo-objectness"}), {"output0": pred},
                     {"output0": pred}, targets, None, None, (640, 640))
