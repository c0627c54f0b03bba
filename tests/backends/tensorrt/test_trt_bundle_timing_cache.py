"""The TensorRT timing cache carried in a bundle as data (tensorrt.timing.cache, hash-checked like every bundled
file, never a path), combined into the device's own cache before a build from the bundle (timing_cache_seed), and
saved back into the device's cache under its lock. The TensorRT side runs on the conformance stand-ins of 10.3, the
newest 10.x and the newest 11.x, whose cache counts entries (one per layer built) instead of holding timings."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from trt_standin import install, surface_versions
from trt_standin.behaviors import CACHE_MAGIC
from trt_standin.models import conv_model, deploy_folder

from edgedeploy.backends.tensorrt import TensorRTBackend
from edgedeploy.bundle.build import device_spec
from edgedeploy.bundle.make import make_bundle
from edgedeploy.bundle.manifest import MANIFEST, SPEC, TIMING_CACHE, open_bundle
from edgedeploy.config import TensorRTSettings, load_spec
from edgedeploy.errors import EdgeDeployError
from edgedeploy.stagecache import default_root

VERSIONS = surface_versions()
NEWEST10 = max((v for v in VERSIONS if v.startswith("10.")), key=lambda v: int(v.split(".")[1]))
NEWEST11 = max((v for v in VERSIONS if v.startswith("11.")), key=lambda v: int(v.split(".")[1]))
ASKED = ["10.3", NEWEST10, NEWEST11]


def entries(path) -> int:
    return json.loads(path.read_bytes()[len(CACHE_MAGIC):])["entries"]


def build(folder, **settings):
    deploy_folder(folder)
    return TensorRTBackend().build(folder / "deploy.onnx", folder / "trt", "fp32",
                                   TensorRTSettings.model_validate(settings))


@pytest.mark.parametrize("version", ASKED)
def test_the_bundled_cache_is_combined_in_and_saved_into_the_device_cache(monkeypatch, tmp_path, version):
    install(monkeypatch, version)
    build(tmp_path / "earlier", timing_cache=str(tmp_path / "seed.cache"))  # the cache a bundle carries
    seed = (tmp_path / "seed.cache").read_bytes()
    assert entries(tmp_path / "seed.cache") == 2  # conv0, relu0
    device = tmp_path / "device" / "timing.cache"
    built = build(tmp_path / "dev", timing_cache=str(device), timing_cache_seed=str(tmp_path / "seed.cache"))
    assert "combined with the entries of seed.cache" in built.info["timing_cache"]
    assert entries(device) == 2 + 2  # the seed's, then this build's own
    assert (tmp_path / "seed.cache").read_bytes() == seed  # a seed is read, never written
    again = build(tmp_path / "dev2", timing_cache=str(device), timing_cache_seed=str(tmp_path / "seed.cache"))
    assert again.info["timing_cache"].startswith(f"reused {device}") and entries(device) == 4 + 2 + 2


def test_a_seed_from_another_tensorrt_is_left_out_and_the_build_goes_on(monkeypatch, tmp_path):
    install(monkeypatch, "10.3")
    build(tmp_path / "earlier", timing_cache=str(tmp_path / "seed.cache"))
    install(monkeypatch, NEWEST10)
    built = build(tmp_path / "dev", timing_cache=str(tmp_path / "device.cache"),
                  timing_cache_seed=str(tmp_path / "seed.cache"))
    assert "seed.cache was made on another GPU or TensorRT version: not used" in built.info["timing_cache"]
    assert entries(tmp_path / "device.cache") == 2 and built.artifact.is_file()


@pytest.fixture
def small_spec(tmp_path):
    conv_model(tmp_path / "model.onnx")
    np.savez(tmp_path / "val.npz", images=np.random.default_rng(0).random((8, 3, 16, 16), dtype=np.float32))
    (tmp_path / "workstation.cache").write_bytes(CACHE_MAGIC + b'{"version": "10.3", "device": [8, 7], "entries": 5}')
    spec = {"name": "small", "model": {"onnx": "model.onnx"}, "target": "trt",
            "inputs": [{"name": "images", "shape": ["batch", 3, 16, 16]}],
            "validation": {"data": "val.npz", "latency": {"warmup": 1, "iterations": 3, "batch_sizes": [1]}},
            "tensorrt": {"timing_cache": "workstation.cache"}}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    return load_spec(tmp_path / "spec.yaml")


def test_a_bundle_carries_the_cache_as_data_and_the_device_build_seeds_from_it(small_spec, tmp_path):
    bundle_dir = tmp_path / "bundle"
    manifest = make_bundle(small_spec, bundle_dir, ["fp32"])
    assert manifest["tensorrt"] == {"timing_cache": TIMING_CACHE} and TIMING_CACHE in manifest["files"]
    assert (bundle_dir / TIMING_CACHE).read_bytes() == (tmp_path / "workstation.cache").read_bytes()
    assert "workstation.cache" not in (bundle_dir / MANIFEST).read_text() + (bundle_dir / SPEC).read_text()
    bundle = open_bundle(bundle_dir)
    assert bundle.spec.tensorrt.timing_cache is None and bundle.timing_cache == bundle_dir / TIMING_CACHE
    spec = device_spec(bundle.spec, bundle)
    assert spec.tensorrt.timing_cache_seed == bundle_dir / TIMING_CACHE
    assert spec.tensorrt.timing_cache == default_root() / "tensorrt" / "timing.cache"  # the device's, shared
    other = device_spec(bundle.spec.model_copy(update={"target": "onnxruntime"}), bundle)
    assert other.tensorrt.timing_cache_seed is None  # only TensorRT builds take it


def test_a_bundle_naming_another_cache_or_a_changed_cache_is_refused(small_spec, tmp_path):
    make_bundle(small_spec, tmp_path / "bundle", ["fp32"])
    changed = tmp_path / "changed"
    shutil.copytree(tmp_path / "bundle", changed)
    (changed / TIMING_CACHE).write_bytes(b"another cache")
    with pytest.raises(EdgeDeployError, match=f"{TIMING_CACHE} does not match its sha256"):
        open_bundle(changed)
    pointing = tmp_path / "pointing"
    shutil.copytree(tmp_path / "bundle", pointing)
    record = json.loads((pointing / MANIFEST).read_text())
    record["tensorrt"] = {"timing_cache": "/home/me/.cache/other.cache"}
    (pointing / MANIFEST).write_text(json.dumps(record))
    with pytest.raises(EdgeDeployError, match="names a TensorRT timing cache other than its own"):
        open_bundle(pointing)
    spec_json = json.loads((tmp_path / "bundle" / SPEC).read_text())
    assert spec_json["tensorrt"]["timing_cache"] is None and spec_json["tensorrt"]["timing_cache_seed"] is None
