"""Calibration readers, deterministic selection and hashing, their errors, and the keyed cache."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgedeploy.config import BuildSpec, CalibrationSpec, Preprocess
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.precision.cache import CalibrationCache, check_key_file, key_record
from edgedeploy.precision.calibration import load_calibration
from edgedeploy.preprocess import fit_image

REPO = Path(__file__).resolve().parents[2]


def spec_for(data=None, shape=(3, 32, 32), **calib) -> BuildSpec:
    return BuildSpec.model_validate({
        "model": {"onnx": "unused.onnx"},
        "inputs": [{"name": "images", "shape": ["batch", *shape]}],
        "calibration": {"data": str(data) if data else None, **calib},
    })


def write_images(folder: Path, n: int, size=(32, 32), seed=0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        p = folder / f"img_{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_image_folder_is_read_preprocessed_and_hashed(tmp_path):
    write_images(tmp_path / "imgs", 5)
    (tmp_path / "imgs" / "notes.txt").write_text("ignored")
    calib = load_calibration(spec_for(tmp_path / "imgs"))
    assert calib.format == "images" and len(calib) == 5 and calib.candidates == 5
    assert calib.ids == [f"img_{i:03d}.png" for i in range(5)]
    x = calib.samples[0]["images"]
    assert x.shape == (1, 3, 32, 32) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    raw = np.asarray(Image.open(tmp_path / "imgs" / "img_000.png"))
    np.testing.assert_allclose(x[0], raw.transpose(2, 0, 1) / 255.0, atol=1e-6)
    assert len(calib.sha256) == 64


def test_bundled_demo_calibration_set_matches_its_readme_recipe():
    folder = REPO / "calibration" / "demo"
    if not any(folder.glob("*.png")):
        pytest.skip("calibration/demo is being produced by the demo training")
    spec = spec_for(folder, shape=(3, 64, 64))
    calib = load_calibration(spec)
    assert len(calib) == 300 and calib.ids[0] == "calib_0000.png"
    from edgedeploy.demo.data import to_input

    raw = np.asarray(Image.open(folder / "calib_0000.png").convert("RGB"))
    np.testing.assert_allclose(calib.samples[0]["images"], to_input(raw[None]), atol=1e-6)


def test_selection_is_deterministic_and_the_hash_covers_exactly_the_samples_used(tmp_path):
    write_images(tmp_path / "imgs", 12)
    a = load_calibration(spec_for(tmp_path / "imgs", subset_size=5, seed=1))
    b = load_calibration(spec_for(tmp_path / "imgs", subset_size=5, seed=1))
    c = load_calibration(spec_for(tmp_path / "imgs", subset_size=5, seed=2))
    assert a.ids == b.ids and a.sha256 == b.sha256 and len(a) == 5 and a.candidates == 12
    assert a.ids == sorted(a.ids)  # kept in file order
    assert c.ids != a.ids and c.sha256 != a.sha256
    # one pixel of a used image changes the hash; a change to an unused image does not
    unused = next(f"img_{i:03d}.png" for i in range(12) if f"img_{i:03d}.png" not in a.ids)
    img = np.asarray(Image.open(tmp_path / "imgs" / unused)).copy()
    img[0, 0] ^= 1
    Image.fromarray(img).save(tmp_path / "imgs" / unused)
    assert load_calibration(spec_for(tmp_path / "imgs", subset_size=5, seed=1)).sha256 == a.sha256
    used = tmp_path / "imgs" / a.ids[2]
    img = np.asarray(Image.open(used)).copy()
    img[0, 0] ^= 1
    Image.fromarray(img).save(used)
    assert load_calibration(spec_for(tmp_path / "imgs", subset_size=5, seed=1)).sha256 != a.sha256


def test_npy_npz_and_callable_readers(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    inputs = rng.random((6, 3, 32, 32)).astype(np.float32)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "inputs.npy", inputs)
    np.save(tmp_path / "images.npy", images)
    np.savez(tmp_path / "by_name.npz", images=inputs[:3])
    np.savez(tmp_path / "raw.npz", images=images)

    a = load_calibration(spec_for(tmp_path / "inputs.npy"))
    assert a.format == "npy" and len(a) == 6 and a.ids[1] == "inputs.npy[1]"
    np.testing.assert_array_equal(a.stacked()["images"], inputs)
    b = load_calibration(spec_for(tmp_path / "images.npy"))  # uint8 NHWC images are preprocessed
    np.testing.assert_allclose(b.samples[0]["images"][0], images[0].transpose(2, 0, 1) / 255.0, atol=1e-6)
    c = load_calibration(spec_for(tmp_path / "by_name.npz"))  # float `images` = the input named images
    np.testing.assert_array_equal(c.stacked()["images"], inputs[:3])
    d = load_calibration(spec_for(tmp_path / "raw.npz"))
    assert d.sha256 == b.sha256  # same images, same preprocessing, same samples in the same order

    (tmp_path / "calibmod.py").write_text(textwrap.dedent("""
        import numpy as np
        def batches():
            rng = np.random.default_rng(0)
            yield rng.random((2, 3, 32, 32))            # a batch of two (float64: cast to float32)
            yield {"images": rng.random((3, 32, 32))}   # one sample without a batch dimension
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    e = load_calibration(spec_for(function="calibmod:batches"))
    assert e.format == "callable" and len(e) == 3 and e.samples[0]["images"].dtype == np.float32
    assert e.ids == ["calibmod:batches[0][0]", "calibmod:batches[0][1]", "calibmod:batches[1]"]
    sys.modules.pop("calibmod", None)


def test_resize_and_letterbox_fit_the_input():
    img = np.full((20, 40, 3), 200, np.uint8)
    stretched = fit_image(img, (32, 32), Preprocess(resize="resize"))
    boxed = fit_image(img, (32, 32), Preprocess(resize="letterbox", pad_value=114))
    assert stretched.shape == boxed.shape == (32, 32, 3)
    assert (boxed[0] == 114).all() and (boxed[16] == 200).all()  # 40x20 -> 32x16, centred, padded above/below
    with pytest.raises(UsageError, match="needs 32x32"):
        fit_image(img, (32, 32), Preprocess(resize="none"), where="x.png")


def test_errors_name_the_file_and_the_expected_shape(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="calibration set is empty") as e:
        load_calibration(spec_for(tmp_path / "empty"))
    assert str(tmp_path / "empty") in e.value.message

    write_images(tmp_path / "bad", 2)
    (tmp_path / "bad" / "img_001.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(UsageError, match="unreadable or corrupt calibration image") as e:
        load_calibration(spec_for(tmp_path / "bad"))
    assert e.value.where.endswith("img_001.png")

    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 16, 16), np.float32))
    with pytest.raises(UsageError, match=r"tensor 'images' has shape \[3, 16, 16\].*expected \[batch, 3, 32, 32\]") \
            as e:
        load_calibration(spec_for(tmp_path / "wrong.npy"))
    assert e.value.where == "wrong.npy[0]"

    write_images(tmp_path / "small", 1, size=(16, 16))
    spec = spec_for(tmp_path / "small").model_copy(update={"preprocess": Preprocess(resize="none")})
    with pytest.raises(UsageError, match="needs 32x32") as e:
        load_calibration(spec)
    assert e.value.where.endswith("img_000.png")

    with pytest.raises(UsageError, match="INT8 needs calibration data"):
        load_calibration(spec_for(None))
    with pytest.raises(UsageError, match="not found"):
        load_calibration(spec_for(tmp_path / "missing"))
    with pytest.raises(ValueError):
        CalibrationSpec(data=Path("x"), function="m:f")


# ------------------------------------------------------------------------------------------------------- cache

def material(**changes):
    m = {"model_sha256": "a" * 64, "data_sha256": "b" * 64, "settings": {"preset": "mixed"},
         "libraries": {"nncf": "3.4.0"}}
    return {**m, **changes}


def test_cache_reuses_an_equal_key_and_names_what_made_an_entry_stale(tmp_path):
    cache = CalibrationCache(tmp_path / "cache")
    first = cache.entry("qdq-int8", material())
    assert first.status == "new"
    staged = first.staging()
    (staged / "model.onnx").write_bytes(b"q")
    first.commit(staged)
    assert cache.entry("qdq-int8", material()).status == "reused"

    after_model = cache.entry("qdq-int8", material(model_sha256="c" * 64))
    assert after_model.status == "rebuilt" and after_model.stale["changed"] == ["model_sha256"]
    assert "stale result" in after_model.note and after_model.dir != first.dir
    after_data = cache.entry("qdq-int8", material(data_sha256="d" * 64))
    assert after_data.stale["changed"] == ["data_sha256"]
    settings = cache.entry("qdq-int8", material(settings={"preset": "performance"}))
    assert settings.stale["changed"] == ["settings.preset"]


def test_a_tampered_or_incomplete_entry_is_refused_and_rebuilt(tmp_path):
    cache = CalibrationCache(tmp_path / "cache")
    entry = cache.entry("openvino-int8", material())
    staged = entry.staging()
    entry.commit(staged)
    record = json.loads((entry.dir / "key.json").read_text())
    record["material"]["data_sha256"] = "e" * 64
    (entry.dir / "key.json").write_text(json.dumps(record))
    again = cache.entry("openvino-int8", material())
    assert again.status == "refused" and "data_sha256 changed" in again.note
    assert not again.dir.exists()  # removed so it is rebuilt

    (again.dir).mkdir(parents=True)  # a folder without key.json: an interrupted write
    assert cache.entry("openvino-int8", material()).status == "refused"


def test_check_key_file_refuses_a_stale_single_file_cache(tmp_path):
    cache = tmp_path / "int8.cache"
    assert check_key_file(cache, tmp_path / "int8.cache.json", material()) is False
    cache.write_bytes(b"scales")
    (tmp_path / "int8.cache.json").write_text(json.dumps(key_record(material(), cache)))
    assert check_key_file(cache, tmp_path / "int8.cache.json", material()) is True
    with pytest.raises(EdgeDeployError, match="stale calibration cache: model_sha256 changed"):
        check_key_file(cache, tmp_path / "int8.cache.json", material(model_sha256="f" * 64))


def test_datasets_calibrate_on_their_images_as_an_image_folder_would(tmp_path):
    """A COCO JSON, a YOLO data.yaml (its split) and class folders give exactly the samples of the same images in a
    plain folder: the same readers as validation, the same preprocessing, the same hash."""
    from dataset_helpers import write_coco, write_yolo

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (4, 24, 40, 3), dtype=np.uint8)  # not the input's size: letterboxed
    targets = np.array([[0, 0, 2, 2, 10, 10], [2, 1, 5, 5, 20, 20]], np.float64)
    (tmp_path / "plain").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / "plain" / f"img_{i:05d}.png")
    letterbox = {"preprocess": Preprocess(resize="letterbox", pad_value=114)}
    plain = load_calibration(spec_for(tmp_path / "plain").model_copy(update=letterbox))
    coco_json = write_coco(tmp_path / "coco", images, targets, ["a", "b"])
    write_yolo(tmp_path / "yolo", images, targets, ["a", "b"])
    for data, extra, fmt in ((coco_json, {"images": str(tmp_path / "coco" / "val")}, "coco"),
                             (tmp_path / "yolo" / "data.yaml", {"split": "val"}, "yolo")):
        got = load_calibration(spec_for(data, **extra).model_copy(update=letterbox))
        assert got.format == fmt and len(got) == 4
        assert got.sha256 == plain.sha256, fmt
    with pytest.raises(UsageError, match="no `train` entry") as e:  # calibration's default split is train
        load_calibration(spec_for(tmp_path / "yolo" / "data.yaml"))
    assert e.value.where.endswith("data.yaml")
