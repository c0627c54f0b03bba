"""The calibration cache checks its entries' contents, not only their keys: a changed, truncated, missing or added
file, or a key file of the older format without file hashes, is refused (naming the file) and rebuilt; TensorRT's
single-file calibrator caches get the same check. One end-to-end ONNX Runtime INT8 build shows the refusal in the
report and a sound artifact after it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgedeploy import pipeline
from edgedeploy.config import BuildSpec
from edgedeploy.errors import EdgeDeployError
from edgedeploy.precision.cache import KEY_FILE, CalibrationCache, check_key_file, key_record

MATERIAL = {"model_sha256": "a" * 64, "data_sha256": "b" * 64, "settings": {"preset": "mixed"},
            "libraries": {"nncf": "3.4.0"}}
IR_FILES = {"model.xml": b"<net name='q'/>\n", "model.bin": bytes(range(256)) * 64, "quantize.json": b"{}\n"}


def committed(root: Path, files=IR_FILES, kind="openvino-int8") -> tuple[CalibrationCache, Path]:
    cache = CalibrationCache(root)
    entry = cache.entry(kind, MATERIAL)
    staged = entry.staging()
    for name, data in files.items():
        (staged / name).write_bytes(data)
    entry.commit(staged)
    assert cache.entry(kind, MATERIAL).status == "reused"
    return cache, entry.dir


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-1])


def delete(path: Path) -> None:
    path.unlink()


def test_key_file_records_size_and_sha256_of_every_file(tmp_path):
    _, folder = committed(tmp_path)
    record = json.loads((folder / KEY_FILE).read_text())
    assert record["schema"] == "edgedeploy.calibration-cache/2"
    assert sorted(record["files"]) == sorted(IR_FILES)
    for name, data in IR_FILES.items():
        assert record["files"][name] == {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.mark.parametrize("damage, name, expected", [
    (flip_byte, "model.bin", "model.bin: content hash mismatch (sha256"),
    (flip_byte, "model.xml", "model.xml: content hash mismatch (sha256"),
    (truncate, "model.bin", f"model.bin: content hash mismatch ({len(IR_FILES['model.bin']) - 1} bytes, recorded"),
    (delete, "model.bin", "model.bin: missing"),
])
def test_a_damaged_entry_is_refused_naming_the_file_and_rebuilt(tmp_path, damage, name, expected):
    cache, folder = committed(tmp_path)
    damage(folder / name)
    again = cache.entry("openvino-int8", MATERIAL)
    assert again.status == "refused"
    assert again.note.startswith("refused and rebuilt: ") and expected in again.note
    assert not folder.exists()  # removed, so the stage rebuilds it
    assert again.report()["status"] == "refused" and expected in again.report()["note"]
    staged = again.staging()  # rebuilt: the next lookup reuses it
    for n, data in IR_FILES.items():
        (staged / n).write_bytes(data)
    again.commit(staged)
    assert cache.entry("openvino-int8", MATERIAL).status == "reused"


def test_a_file_added_to_an_entry_is_refused(tmp_path):
    files = {"model.qdq.onnx": b"q" * 100, "quantize.json": b"{}"}
    cache, folder = committed(tmp_path, kind="qdq-int8-ort", files=files)
    (folder / "sub").mkdir()
    (folder / "sub" / "extra.bin").write_bytes(b"x")
    again = cache.entry("qdq-int8-ort", MATERIAL)
    assert again.status == "refused" and "sub/extra.bin: not in the key file's file list" in again.note


def test_an_older_format_key_file_without_hashes_is_refused_and_rebuilt(tmp_path):
    cache, folder = committed(tmp_path)
    record = json.loads((folder / KEY_FILE).read_text())
    del record["files"]
    record["schema"] = "edgedeploy.calibration-cache/1"
    (folder / KEY_FILE).write_text(json.dumps(record))
    again = cache.entry("openvino-int8", MATERIAL)
    assert again.status == "refused"
    assert "records no content hashes (older format, schema edgedeploy.calibration-cache/1)" in again.note
    assert not folder.exists()


@pytest.mark.parametrize("text", ["[1, 2]", '{"key": 1, "material": [], "files": {}}', "{not json"])
def test_a_malformed_key_file_is_refused_not_a_crash(tmp_path, text):
    cache, folder = committed(tmp_path)
    (folder / KEY_FILE).write_text(text)
    assert cache.entry("openvino-int8", MATERIAL).status == "refused"


def test_single_file_calibrator_cache_is_checked_by_content(tmp_path):
    cache, key_file = tmp_path / "int8.cache", tmp_path / "int8.cache.json"
    cache.write_bytes(b"TRT-1003-EntropyCalibration2\ninput: 3c010a14\n")
    key_file.write_text(json.dumps(key_record(MATERIAL, cache, schema="edgedeploy.trt-calibration/2")))
    assert check_key_file(cache, key_file, MATERIAL) is True
    flip_byte(cache)
    with pytest.raises(EdgeDeployError, match="int8.cache: content hash mismatch") as e:
        check_key_file(cache, key_file, MATERIAL)
    assert e.value.where == str(cache) and "delete it" in e.value.fix
    old = {k: v for k, v in json.loads(key_file.read_text()).items() if k != "files"}
    key_file.write_text(json.dumps(old))
    with pytest.raises(EdgeDeployError, match="records no content hashes"):
        check_key_file(cache, key_file, MATERIAL)


# ------------------------------------------------------------------------------------ end to end, real INT8 build


def tiny_model(path: Path) -> None:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.5, "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 8, 8])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_pipeline_rebuilds_a_corrupt_qdq_entry_and_reports_it(tmp_path):
    tiny_model(tmp_path / "tiny.onnx")
    np.save(tmp_path / "calib.npy", np.random.default_rng(1).random((16, 3, 8, 8)).astype(np.float32))
    spec = BuildSpec.model_validate({
        "model": {"onnx": str(tmp_path / "tiny.onnx")},
        "inputs": [{"name": "x", "shape": ["batch", 3, 8, 8]}],
        "target": "onnxruntime", "precision": "int8",
        "optimize": {"simplifier": "none"},
        "validation": {"latency": {"batch_sizes": [1], "warmup": 1, "iterations": 2, "async_requests": 0}},
        "calibration": {"data": str(tmp_path / "calib.npy"), "cache_dir": str(tmp_path / "cache")},
        "int8": {"qdq": {"method": "ort"}},
    })
    first = pipeline.build(spec, tmp_path / "a")
    assert first["precision_stage"]["cache"]["status"] == "new"
    entry = Path(first["precision_stage"]["cache"]["dir"])
    assert pipeline.build(spec, tmp_path / "b")["precision_stage"]["cache"]["status"] == "reused"

    good = (entry / "model.qdq.onnx").read_bytes()
    flip_byte(entry / "model.qdq.onnx")
    third = pipeline.build(spec, tmp_path / "c")
    cache = third["precision_stage"]["cache"]
    assert cache["status"] == "refused" and "model.qdq.onnx: content hash mismatch" in cache["note"]
    assert third["passed"], third["checks"]
    assert (tmp_path / "c" / "deploy.int8.qdq.onnx").read_bytes() == good  # quantize_static is deterministic
    assert check_key_file(entry, entry / KEY_FILE, json.loads((entry / KEY_FILE).read_text())["material"])
