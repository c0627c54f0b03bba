"""edgedeploy.data: COCO JSON, YOLO, image-class folders and VOC read into the same records; selection, prefetch;
errors that name the file (and line)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import yaml

from dataset_helpers import save_png, write_coco, write_yolo
from edgedeploy.data.coco import open_coco
from edgedeploy.data.imagefolder import open_imagefolder
from edgedeploy.data.stream import iter_batches, select
from edgedeploy.data.voc import open_voc
from edgedeploy.data.yolo import open_yolo
from edgedeploy.errors import UsageError

NAMES = ["cat", "dog", "bird"]


@pytest.fixture
def small_set():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 30, 40, 3), dtype=np.uint8)
    targets = np.array([[0, 0, 1, 2, 11, 12], [0, 2, 5.5, 6, 30, 29], [2, 1, 0, 0, 40, 30], [3, 0, 10, 10, 20, 20]])
    return images, targets


def test_coco_and_yolo_give_the_same_records(tmp_path, small_set):
    images, targets = small_set
    coco = open_coco(write_coco(tmp_path / "coco", images, targets, NAMES, category_ids=[3, 7, 90]))
    yolo = open_yolo(write_yolo(tmp_path / "yolo", images, targets, NAMES))
    assert len(coco) == len(yolo) == 4
    assert coco.class_names() == yolo.class_names() == NAMES
    assert coco.category_ids() == [3, 7, 90]
    for i in range(4):
        a, b = coco.record(i), yolo.record(i)
        assert np.array_equal(a.image, images[i]) and np.array_equal(b.image, images[i])
        expected = targets[targets[:, 0] == i]
        for rec in (a, b):
            np.testing.assert_allclose(rec.annotations.boxes, expected[:, 2:], atol=1e-9)
            assert rec.annotations.classes.tolist() == expected[:, 1].astype(int).tolist()
        assert a.annotations.image_id == i + 1
    assert b.key == "images/val/img_00003.png"
    assert coco.fingerprint() == open_coco(tmp_path / "coco" / "annotations" / "instances_val.json").fingerprint()


def test_coco_segmentation_keypoints_and_crowd(tmp_path, small_set):
    images, targets = small_set
    path = write_coco(tmp_path, images[:1], targets[:2], NAMES)
    doc = json.loads(path.read_text())
    doc["annotations"][0]["segmentation"] = [[1, 2, 11, 2, 11, 12, 1, 12]]
    doc["annotations"][1]["segmentation"] = {"size": [30, 40], "counts": "abc"}
    doc["annotations"][1]["iscrowd"] = 1
    for a in doc["annotations"]:
        a["keypoints"] = [3, 4, 2, 0, 0, 0]
    path.write_text(json.dumps(doc))
    ann = open_coco(path).record(0).annotations
    assert ann.iscrowd.tolist() == [False, True]
    np.testing.assert_array_equal(ann.polygons[0][0], [[1, 2], [11, 2], [11, 12], [1, 12]])
    assert ann.rle[1] == {"size": [30, 40], "counts": "abc"} and ann.rle[0] is None
    assert ann.keypoints.shape == (2, 2, 3)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][0].update(category_id=42), "category_id 42"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 5]]), "polygon of 5 coordinates"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2, 3]), "bbox"),
    (lambda d: d["images"][0].update(file_name="../x.png"), "leaves the image folder"),
])
def test_coco_errors_name_the_entry(tmp_path, small_set, change, message):
    images, targets = small_set
    path = write_coco(tmp_path, images, targets, NAMES)
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))
    with pytest.raises(UsageError, match=message) as e:
        open_coco(path)
    assert str(path) in str(e.value)


def test_coco_missing_image_is_named(tmp_path, small_set):
    images, targets = small_set
    path = write_coco(tmp_path, images, targets, NAMES)
    (tmp_path / "val" / "img_00002.png").unlink()
    source = open_coco(path)
    with pytest.raises(UsageError, match="image not found") as e:
        source.record(2)
    assert "img_00002.png" in str(e.value)


@pytest.mark.parametrize("line, message", [
    ("0 0.5 0.5 0.2", "has 4 numbers; a box line has 5"),
    ("3 0.5 0.5 0.2 0.2", "class id 3 is out of range: the dataset has nc=3"),
    ("1 0.1 0.1 0.5 0.1 0.5 0.5 0.2", "an odd number of coordinates"),
    ("1 0.5 0.5 1.7 0.2", r"outside \[0, 1\]"),
    ("x 0.5 0.5 0.2 0.2", "not numbers"),
])
def test_yolo_bad_label_line_names_file_and_line(tmp_path, small_set, line, message):
    images, targets = small_set
    source = open_yolo(write_yolo(tmp_path, images, targets, NAMES))
    label = tmp_path / "labels" / "val" / "img_00001.txt"
    label.write_text("0 0.5 0.5 0.2 0.2\n" + line + "\n")
    with pytest.raises(UsageError, match=message) as e:
        source.record(1)
    assert f"{label}:2" in str(e.value)


def test_yolo_polygons_and_pose(tmp_path):
    image = np.zeros((20, 40, 3), np.uint8)
    save_png(tmp_path / "images" / "a.png", image)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.25 0.5 0.75 0.5 0.5 1.0\n")
    seg = open_yolo(tmp_path).record(0).annotations
    np.testing.assert_allclose(seg.boxes, [[10, 10, 30, 20]])
    np.testing.assert_allclose(seg.polygons[0][0], [[10, 10], [30, 10], [20, 20]])
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "images", "names": ["p"],
                                                        "kpt_shape": [2, 3]}))
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5 0.25 0.5 2 0 0 0\n")
    pose = open_yolo(tmp_path / "data.yaml").record(0).annotations
    np.testing.assert_allclose(pose.keypoints, [[[10, 10, 2], [0, 0, 0]]])
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5 0.25 0.5 2\n")
    with pytest.raises(UsageError, match=r"kpt_shape \[2, 3\] a pose line has 11"):
        open_yolo(tmp_path / "data.yaml").record(0)


def test_yolo_listed_image_missing(tmp_path):
    (tmp_path / "val.txt").write_text("images/nothere.png\n")
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "val.txt", "names": ["a"]}))
    with pytest.raises(UsageError, match="image not found") as e:
        open_yolo(tmp_path / "data.yaml").record(0)
    assert "nothere.png" in str(e.value)


def test_imagefolder_with_and_without_a_class_map(tmp_path):
    for cls, n in (("n02", 2), ("n01", 1)):
        for k in range(n):
            save_png(tmp_path / "data" / cls / f"{k}.png", np.full((4, 4, 3), k, np.uint8))
    plain = open_imagefolder(tmp_path / "data")
    assert plain.class_names() == ["n01", "n02"]
    assert [plain.record(i).annotations.label for i in range(3)] == [0, 1, 1]
    (tmp_path / "map.json").write_text(json.dumps({"0": ["n02", "tench"], "1": ["n01", "goldfish"]}))
    mapped = open_imagefolder(tmp_path / "data", tmp_path / "map.json")
    assert mapped.class_names() == ["tench", "goldfish"]
    assert [mapped.record(i).annotations.label for i in range(3)] == [1, 0, 0]
    (tmp_path / "map.txt").write_text("n02\n")
    with pytest.raises(UsageError, match="class folder 'n01' is not in the class-index map"):
        open_imagefolder(tmp_path / "data", tmp_path / "map.txt")


def test_voc(tmp_path):
    save_png(tmp_path / "JPEGImages" / "0001.png", np.zeros((50, 60, 3), np.uint8))
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "0001.xml").write_text(
        "<annotation><filename>0001.png</filename>"
        "<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax>"
        "<ymax>40</ymax></bndbox></object>"
        "<object><name>person</name><difficult>1</difficult><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>9</xmax>"
        "<ymax>9</ymax></bndbox></object></annotation>")
    source = open_voc(tmp_path)
    ann = source.record(0).annotations
    np.testing.assert_allclose(ann.boxes, [[0, 1, 30, 40], [4, 4, 9, 9]])
    assert ann.classes.tolist() == [11, 14] and ann.iscrowd.tolist() == [False, True]
    (tmp_path / "Annotations" / "0001.xml").write_text("<annotation><object><name>dog</name></object>")
    with pytest.raises(UsageError, match="not valid XML") as e:
        open_voc(tmp_path)
    assert "0001.xml:1" in str(e.value)


def test_select_is_deterministic():
    assert select(10) == list(range(10))
    assert select(10, limit=3) == [0, 1, 2]
    a, b = select(1000, subset=50, seed=1), select(1000, subset=50, seed=1)
    assert a == b and len(a) == 50 and a == sorted(a) and a != select(1000, subset=50, seed=2)
    assert set(select(100, limit=20, subset=5, seed=0)) <= set(range(20))
    with pytest.raises(UsageError, match="limit is 0"):
        select(10, limit=0)


class _Counting:
    kind = "test"

    def __init__(self, n: int, fail_at: int | None = None):
        self.n, self.fail_at, self.threads = n, fail_at, set()

    def __len__(self):
        return self.n

    def record(self, i):
        self.threads.add(threading.current_thread().name)
        if i == self.fail_at:
            raise UsageError(f"record {i} is broken")
        return i


def test_iter_batches_order_thread_and_errors():
    source = _Counting(10)
    batches = list(iter_batches(source, [9, 1, 2, 3, 4], batch=2, prepare=lambda r: r * 10))
    assert batches == [[90, 10], [20, 30], [40]]
    assert source.threads == {"edgedeploy-prefetch"}
    broken = iter_batches(_Counting(10, fail_at=3), list(range(10)), batch=2)
    assert next(broken) == [0, 1]
    with pytest.raises(UsageError, match="record 3 is broken"):
        list(broken)
    early = iter_batches(_Counting(1000), list(range(1000)), batch=1, prefetch=1)
    next(early)
    early.close()  # the reader thread stops instead of blocking on a full queue


def test_validation_set_from_class_folders_with_subset(tmp_path):
    """validation.data naming class folders: labels come with the images; `subset`/`seed` pick the same images."""
    from edgedeploy.config import BuildSpec
    from edgedeploy.preprocess import load_validation_set

    for cls in ("a", "b", "c"):
        for k in range(4):
            save_png(tmp_path / "data" / cls / f"{k}.png", np.full((8, 10, 3), 10 * k, np.uint8))
    spec = BuildSpec(model={"onnx": "m.onnx"}, inputs=[{"name": "x", "shape": ["batch", 3, 16, 16]}],
                     preprocess={"resize": "letterbox"},
                     validation={"data": str(tmp_path / "data"), "task": "classification", "subset": 5, "seed": 3})
    first, again = load_validation_set(spec), load_validation_set(spec)
    assert first.inputs["x"].shape == (5, 3, 16, 16)
    np.testing.assert_array_equal(first.inputs["x"], again.inputs["x"])
    assert first.labels.tolist() == again.labels.tolist() and set(first.labels.tolist()) <= {0, 1, 2}
    assert first.class_names == ["a", "b", "c"] and "imagefolder, 5 of 12 images" in first.source
    np.testing.assert_allclose(first.inputs["x"][:, :, :1], 114 / 255, rtol=1e-6)  # letterbox: 13 rows, top pad 1


def test_yolo_names_keyed_by_ids_as_ultralytics_reads_them(tmp_path):
    """`names` as a list, a mapping of integer ids, or of digit-string ids (a quoted key, a JSON data file) give the
    same classes; a gap or a non-id key is one line naming the file."""
    save_png(tmp_path / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    for names in (["a", "b"], {0: "a", 1: "b"}, {"1": "b", "0": "a"}):
        (tmp_path / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "images", "names": names}))
        assert open_yolo(tmp_path / "data.yaml").class_names() == ["a", "b"]
    for names in ({0: "a", 2: "b"}, {"0": "a", "x": "b"}, {0: "a", "0": "b"}):
        (tmp_path / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "images", "names": names}))
        with pytest.raises(UsageError, match="`names` keys must be the class ids 0..nc-1") as e:
            open_yolo(tmp_path / "data.yaml")
        assert e.value.where.endswith("data.yaml")
