"""Property tests for the readers of untrusted files: whatever an .npz/.npy, a baseline report, a manifest or a
calibration image holds — arrays of any dtype and shape (object arrays, 0-d, structured, strings, empty), the bytes
of a valid file truncated, bit-flipped or spliced, arbitrary JSON in place of any field — the reader returns what it
promises or raises one UsageError naming the file; never another exception. What a reader accepts is then used the
way edgedeploy uses it (the baseline compared, the arrays read as samples) without an exception either.

EDGEDEPLOY_READER_EXAMPLES=2000 for a longer hunt; the default keeps the suite fast."""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgedeploy import arrayfile
from edgedeploy.config import BuildSpec, RegressionSettings, Thresholds
from edgedeploy.errors import UsageError
from edgedeploy.data.images import read_image
from edgedeploy.validate import gate

PROPS = settings(max_examples=int(os.environ.get("EDGEDEPLOY_READER_EXAMPLES", "100")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NUMERIC = hnp.boolean_dtypes() | hnp.integer_dtypes() | hnp.unsigned_integer_dtypes() | hnp.floating_dtypes()
OTHER = (hnp.complex_number_dtypes() | hnp.unicode_string_dtypes(max_len=4) | hnp.byte_string_dtypes(max_len=4)
         | hnp.datetime64_dtypes() | st.just(np.dtype([("x", "<f4"), ("y", "<i2")])))
arrays = st.one_of(
    hnp.arrays(NUMERIC | OTHER, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)),
    st.lists(st.integers(), max_size=3).map(lambda v: np.array([v, None], dtype=object)))
names = st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=8)


def _allowed(a: np.ndarray) -> bool:
    return a.dtype.kind in "biuf" and a.dtype.fields is None and a.ndim >= 1


def _mutated(data: bytes, cuts: list[tuple[int, int, bytes]]) -> bytes:
    """`data` with each (position, length, replacement) applied: bytes replaced, cut out or spliced in."""
    out = bytearray(data)
    for pos, length, new in cuts:
        pos %= max(1, len(out))
        out[pos:pos + length] = new
    return bytes(out)


cuts = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 64), st.binary(max_size=8)), min_size=1,
                max_size=4)


def _read_all(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npy":
        return {"": arrayfile.read_npy(path, "data")}
    with arrayfile.open_npz(path, "data") as data:
        return {name: data[name] for name in data.files}


def _check_refusal(error: UsageError, path: Path) -> None:
    assert error.where == str(path) and "\n" not in error.message, error.message


@PROPS
@given(st.dictionaries(names, arrays, min_size=1, max_size=3), st.booleans())
@example({"file": np.zeros(2, np.float32), "allow_pickle": np.ones((1, 2), np.int8)}, False)  # savez's own names
def test_npz_arrays_come_back_equal_or_are_refused_naming_the_file(members, compressed):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        arrayfile.write_npz(path, members, compressed=compressed, allow_pickle=True)
        try:
            loaded = _read_all(path)
        except UsageError as e:
            _check_refusal(e, path)
            assert not all(_allowed(a) for a in members.values()), e.message
            return
        assert all(_allowed(a) for a in members.values())
        assert loaded.keys() == members.keys()
        for name, a in members.items():
            assert loaded[name].dtype == a.dtype and np.array_equal(loaded[name], a, equal_nan=True)


@PROPS
@given(arrays)
def test_npy_arrays_come_back_equal_or_are_refused_naming_the_file(a):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npy"
        np.save(path, a, allow_pickle=True)
        try:
            loaded = arrayfile.read_npy(path, "data")
        except UsageError as e:
            _check_refusal(e, path)
            assert not _allowed(a)
            return
        assert _allowed(a) and loaded.dtype == a.dtype and np.array_equal(loaded, a, equal_nan=True)


@pytest.fixture(scope="module")
def valid_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    members = {"images": rng.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8),
               "targets": rng.random((5, 6)).astype(np.float32), "labels": np.arange(4)}
    files = {}
    for suffix, save in ((".npz", np.savez), ("c.npz", np.savez_compressed)):
        buf = io.BytesIO()
        save(buf, **members)
        files[suffix] = buf.getvalue()
    buf = io.BytesIO()
    np.save(buf, members["images"])
    files[".npy"] = buf.getvalue()
    return files


@PROPS
@given(st.sampled_from([".npz", "c.npz", ".npy"]), cuts)
def test_damaged_array_files_are_read_or_refused_never_crash(valid_files, kind, damage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("data.npy" if kind == ".npy" else "data.npz")
        path.write_bytes(_mutated(valid_files[kind], damage))
        try:
            loaded = _read_all(path)
        except UsageError as e:
            _check_refusal(e, path)
            return
        for a in loaded.values():  # what is read is fit to be used as samples
            assert _allowed(a)
            np.ascontiguousarray(a[:1]).tobytes()


@PROPS
@given(st.binary(max_size=256), st.sampled_from(["data.npz", "data.npy"]))
def test_arbitrary_bytes_are_refused_naming_the_file(data, name):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            _read_all(path)
        except UsageError as e:
            _check_refusal(e, path)


# --------------------------------------------------------------------------------------------- baselines, manifests

CURRENT = {"target": "onnxruntime", "precision": "fp32", "task": {"kind": "classification", "top1_agreement": 1.0,
                                                                   "top1": 0.9},
           "tensors": {"y": {"rel_l2": 1e-6}}, "latency": [{"batch": 1, "median_ms": 1.0, "cov": 0.02}],
           "conditions": {"backend": "onnxruntime", "processor": "cpu", "threads": 2}}
BASELINE = {"schema": "edgedeploy.report/2", **json.loads(json.dumps(CURRENT))}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)


def _locations(doc, prefix=()) -> list[tuple]:
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    return [loc for k, v in items for loc in [prefix + (k,), *_locations(v, prefix + (k,))]]


def _replaced(doc, location: tuple, value):
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in location[:-1]:
        parent = parent[key]
    parent[location[-1]] = value
    return doc


def _json_text(doc) -> str:
    return json.dumps(doc, allow_nan=True)


@PROPS
@given(st.data(), json_values)
def test_baselines_are_typed_or_refused_and_what_is_accepted_is_compared(data, value):
    locations = _locations(BASELINE)
    location = data.draw(st.sampled_from(locations))
    doc = data.draw(st.sampled_from([_replaced(BASELINE, location, value), value]))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "baseline.json"
        path.write_text(_json_text(doc))
        try:
            baseline = gate.load_baseline(path)
        except UsageError as e:
            _check_refusal(e, path)
            return
    try:
        checks = gate.baseline_checks(CURRENT, baseline, RegressionSettings(), Thresholds(max_rel_l2=1e-5))
    except UsageError as e:  # a baseline of another target or precision: refused as a usage error
        assert "the baseline is for" in e.message
        return
    for c in checks:
        assert c["status"] in ("pass", "fail", "skip")
        assert not any(isinstance(v, float) and math.isnan(v) for v in (c["value"], c["limit"]))


MANIFEST = {"schema": "edgedeploy.manifest/1", "source": {"kind": "onnx"},
            "spec": BuildSpec.model_validate({"model": {"onnx": "m.onnx"}, "inputs": [{"name": "x", "shape": [1]}]}
                                             ).model_dump(mode="json"),
            "artifact": {"path": "onnxruntime/model.onnx", "precision": "fp32"},
            "files": {"deploy.onnx": "0" * 64, "onnxruntime/model.onnx": "a" * 64}}


@PROPS
@given(st.data(), json_values | st.sampled_from(["../x", "/etc/passwd", "a/../../b", "", "ok/file"]))
def test_manifests_are_typed_or_refused_naming_the_file(data, value):
    location = data.draw(st.sampled_from(_locations(MANIFEST)))
    doc = _replaced(MANIFEST, location, value)
    if location[0] == "files" and len(location) == 2 and data.draw(st.booleans()):  # a file key itself
        doc["files"] = {str(value): "0" * 64}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "manifest.json").write_text(_json_text(doc))
        try:
            manifest, spec = gate.read_manifest(Path(tmp))
        except UsageError as e:
            _check_refusal(e, Path(tmp) / "manifest.json")
            return
    assert isinstance(spec, BuildSpec)
    for rel in [*manifest["files"], (manifest.get("artifact") or {}).get("path", "x")]:
        assert not Path(rel).is_absolute() and ".." not in Path(rel).parts  # nothing outside the folder is read


# --------------------------------------------------------------------------------------------- images

@pytest.fixture(scope="module")
def png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@PROPS
@given(cuts)
def test_damaged_images_are_read_or_refused_never_crash(png, damage):
    data = _mutated(png, damage)
    assume(data != png)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a.png"
        path.write_bytes(data)
        try:
            image = read_image(path)
        except UsageError as e:
            _check_refusal(e, path)
            return
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
