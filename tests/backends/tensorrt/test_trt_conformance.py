"""edgedeploy's real TensorRT code (apply_plan, build, the calibrator, the runner, `edgedeploy inspect`) run against
the conformance stand-in of every committed TensorRT release (trt_surfaces/ beside this file: 10.3 for JetPack 6, the
newest 10.x and the newest 11.x), with cuda-python stood in for on NumPy buffers.

A conformance check, not a backend: nothing here builds or runs an engine. It proves our calls exist in each release
with the arguments we pass, that we follow TensorRT's protocols (profiles, calibrator, DLA, compatibility, logger,
bindings), and that outputs travel back through our buffers, copies and chunking. test_trt_runtime.py runs the same
code on a real GPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from trt_standin import FLAVOURS, install, surface_versions
from trt_standin.models import calibration_npz, conv_model, deploy_folder, feeds, marker

from edgedeploy.backends import trt_manifest
from edgedeploy.backends.tensorrt import TensorRTBackend, load_plan
from edgedeploy.config import TensorRTSettings
from edgedeploy.errors import EdgeDeployError, UsageError

REPO = Path(__file__).resolve().parents[3]
# the implicit calibrator's members are deprecated since TensorRT 10.1; the route uses them on purpose
CALIBRATOR_DEPRECATED = pytest.mark.filterwarnings("ignore:Use Deprecated in TensorRT 10.1:DeprecationWarning")
VERSIONS = surface_versions()
MAJOR10 = [v for v in VERSIONS if v.startswith("10.")]


@pytest.fixture(params=VERSIONS)
def standin(request, monkeypatch):
    return install(monkeypatch, request.param)


def settings(**kw) -> TensorRTSettings:
    return TensorRTSettings.model_validate(kw)


def build(folder: Path, precision: str = "fp32", **kw):
    return TensorRTBackend().build(folder / "deploy.onnx", folder / "trt", precision, settings(**kw))


def test_committed_surfaces_cover_jetpack5_6_newest_10_and_newest_11():
    # JetPack 5.1 (8.5), 6.0 (8.6), 6.1/6.2 (10.3), the newest 10.x and the newest 11.x
    assert VERSIONS[:3] == ["8.5", "8.6", "10.3"] and len(MAJOR10) >= 2 and VERSIONS[-1].startswith("11.")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_build_load_run_every_precision(standin, tmp_path, precision):
    deploy_folder(tmp_path)
    built = build(tmp_path, precision)
    blob = built.artifact.read_bytes()
    assert b"not a TensorRT engine" in blob  # the stand-in never writes anything that claims to be an engine
    m, _ = trt_manifest.read_manifest(built.artifact)
    assert m["tensorrt"]["version"] == standin.version and m["precision"] == precision
    assert m["io_tensors"][0]["profile"] == {"min": [1, 3, 16, 16], "opt": [1, 3, 16, 16], "max": [8, 3, 16, 16]}
    expect_onnx = {"fp32": "deploy.onnx", "int8": "deploy.int8.qdq.onnx",
                   "fp16": "deploy.onnx" if standin.major in (8, 10) else "deploy.fp16.onnx"}[precision]
    assert m["onnx"] == expect_onnx
    blob_flags = json.loads(blob.split(b"\n", 1)[1])
    assert ("FP16" in blob_flags["builder_flags"]) == (precision in ("fp16", "int8") and standin.major in (8, 10))
    assert ("INT8" in blob_flags["builder_flags"]) == (precision == "int8" and standin.major in (8, 10))
    assert "TF32" not in blob_flags["builder_flags"] or precision == "fp16"  # cleared for fp32/int8
    runner = load_plan(built.artifact)
    for batch in (1, 5, 20):  # 20 is beyond the profile's max of 8: run in chunks
        x = feeds(batch)
        out = runner.run(x)["pred"]
        assert out.shape == (batch, 8, 16, 16) and out.dtype == np.float32
        np.testing.assert_allclose(out[:, 3, 2, 1], marker(x["images"]), rtol=1e-5)
    runner.close()
    assert not standin.cuda.device and not standin.cuda.pinned and not standin.cuda.streams


def test_static_batch_engine_runs_larger_batches_in_padded_chunks(standin, tmp_path):
    deploy_folder(tmp_path)
    runner = load_plan(build(tmp_path, profiles={"batch": {"min": 2, "opt": 2, "max": 2}}).artifact)
    x = feeds(5)  # chunks of 2, the last padded
    np.testing.assert_allclose(runner.run(x)["pred"][:, 0, 0, 0], marker(x["images"]), rtol=1e-5)
    assert standin.executions == 3  # [0:2], [2:4] and [4:5] padded to 2
    runner.close()


def test_benchmark_reads_every_event_and_frees_them(standin, tmp_path):
    deploy_folder(tmp_path)
    runner = load_plan(build(tmp_path).artifact)
    stats = runner.benchmark(feeds(4), warmup=2, iterations=5)
    assert stats["batch"] == 4 and all(stats[k]["n"] == 5 for k in ("h2d", "gpu_compute", "d2h", "latency"))
    assert not standin.cuda.events  # the stand-in's event times are host clock readings: never a measurement
    runner.close()


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_every_cuda_python_flavour(monkeypatch, tmp_path, flavour):
    model = install(monkeypatch, VERSIONS[-1], flavour=flavour)
    deploy_folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # "strict": int(handle) warns
        runner = load_plan(build(tmp_path).artifact)
        x = feeds(3)
        np.testing.assert_allclose(runner.run(x)["pred"][:, 0, 0, 0], marker(x["images"]), rtol=1e-5)
        runner.close()
    assert model.executions == 1


def test_parser_error_names_the_node_and_op(standin, tmp_path):
    model = conv_model(tmp_path / "deploy.onnx", op="Frobnicate", name="frob_7")
    with pytest.raises(EdgeDeployError) as e:
        TensorRTBackend().build(model, tmp_path / "trt", "fp32", settings())
    assert "frob_7" in e.value.message and "Frobnicate" in e.value.message and "UNSUPPORTED_NODE" in e.value.message
    assert e.value.where == str(model) and not (tmp_path / "trt" / "model.plan").exists()


def test_a_failed_build_is_one_error_with_tensorrts_message(monkeypatch, tmp_path):
    install(monkeypatch, VERSIONS[0], build_fails="Internal Error: out of tactics for conv0")
    deploy_folder(tmp_path)
    with pytest.raises(EdgeDeployError, match="could not build the engine: Internal Error: out of tactics"):
        build(tmp_path)
    assert not (tmp_path / "trt" / "model.plan").exists()


@pytest.mark.parametrize("version", MAJOR10)
def test_dla_build_reports_fallback_and_loads_on_its_core(monkeypatch, tmp_path, version):
    model = install(monkeypatch, version, dla_cores=2)
    conv_model(tmp_path / "deploy.onnx", resize=True)
    built = build(tmp_path, "fp16", dla_core=1, profiles={"batch": {"min": 2, "opt": 2, "max": 2}})
    assert built.info["gpu_fallback_layers"] == [{"name": "resize0", "type": "RESIZE"}]
    blob = json.loads(built.artifact.read_bytes().split(b"\n", 1)[1])
    assert blob["device_type"] == "DLA" and blob["dla_core"] == 1 and "GPU_FALLBACK" in blob["builder_flags"]
    runner = load_plan(built.artifact)  # the runtime must be told the DLA core, or the plan does not load
    x = feeds(3)
    np.testing.assert_allclose(runner.run(x)["pred"][:, 0, 0, 0], marker(x["images"]), rtol=1e-5)
    runner.close()
    with pytest.raises(EdgeDeployError, match="cannot run on the DLA and GPU fallback is off: resize0"):
        build(tmp_path, "fp16", dla_core=1, gpu_fallback=False, profiles={"batch": {"min": 2, "opt": 2, "max": 2}})
    with pytest.raises(UsageError, match="this device has 2 DLA core"):
        build(tmp_path, "fp16", dla_core=2, profiles={"batch": {"min": 2, "opt": 2, "max": 2}})
    assert model.dla_cores == 2


def test_dla_is_refused_before_11_4_1(monkeypatch, tmp_path):
    install(monkeypatch, VERSIONS[-1], dla_cores=2)
    deploy_folder(tmp_path)
    with pytest.raises(UsageError, match="has no DLA on Jetson"):
        build(tmp_path, "fp16", dla_core=0, profiles={"batch": {"min": 1, "opt": 1, "max": 1}})


def test_compatibility_modes_reach_the_builder_and_the_runtime(standin, tmp_path):
    deploy_folder(tmp_path)
    if standin.version.startswith("8.5."):  # the modes arrive in 8.6: refused in one line on JetPack 5's 8.5
        with pytest.raises(UsageError, match="needs TensorRT 8.6 or newer; this is TensorRT 8.5"):
            build(tmp_path, hardware_compatibility="ampere_plus", version_compatible=True)
        return
    built = build(tmp_path, hardware_compatibility="ampere_plus", version_compatible=True)
    blob = json.loads(built.artifact.read_bytes().split(b"\n", 1)[1])
    assert blob["hardware_compatibility"] == "AMPERE_PLUS" and blob["version_compatible"]
    assert "NATIVE_INSTANCENORM" in blob["parser_flags"]
    runner = load_plan(built.artifact)  # a version-compatible plan loads only with engine_host_code_allowed
    runner.close()


def test_timing_cache_is_saved_and_reused(standin, tmp_path):
    deploy_folder(tmp_path)
    cache = tmp_path / "caches" / "timing.cache"
    first = build(tmp_path, timing_cache=str(cache))
    assert cache.is_file() and first.info["timing_cache"].startswith("fresh")
    second = TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "again", "fp32",
                                     settings(timing_cache=str(cache)))
    assert second.info["timing_cache"] == f"reused {cache}"


@CALIBRATOR_DEPRECATED
@pytest.mark.parametrize("version", VERSIONS)
def test_calibrator_route_calibrates_caches_and_reuses(monkeypatch, tmp_path, version):
    model = install(monkeypatch, version)
    deploy_folder(tmp_path)
    data = calibration_npz(tmp_path / "calib.npz", samples=24)
    kw = dict(int8_route="calibrator", calibration_data=str(data), calibration_batch_size=8)
    if model.major >= 11:  # TensorRT 11 removed the implicit calibrator: refused before any TensorRT call
        with pytest.raises(UsageError, match="TensorRT 11 removed the IInt8 calibrators"):
            build(tmp_path, "int8", **kw)
        assert not model.calls
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        built = build(tmp_path, "int8", **kw)
    used = {str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)}
    # the implicit calibrator is deprecated since 10.1 (not in 8.x)
    assert any("explicit quantization" in u for u in used) or model.major == 8
    assert ("calibration", "batches", 3) in model.calls
    assert built.info["builder_flags"] == ["INT8", "FP16"]
    cal = trt_manifest.read_manifest(built.artifact)[0]["calibration"]
    assert cal["batches"] == 3 and not cal["reused"] and Path(cal["cache"]).is_file()
    again = build(tmp_path, "int8", **kw)
    assert trt_manifest.read_manifest(again.artifact)[0]["calibration"]["reused"]
    assert ("calibration", "cache") in model.calls
    assert not model.cuda.device  # every calibration buffer freed


def test_the_fp32_path_uses_no_deprecated_api(standin, tmp_path):
    deploy_folder(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        runner = load_plan(build(tmp_path).artifact)
        runner.run(feeds(2))
        runner.close()


def test_a_plan_from_another_tensorrt_is_refused_before_tensorrt_sees_it(monkeypatch, tmp_path):
    install(monkeypatch, VERSIONS[0])
    deploy_folder(tmp_path)
    built = build(tmp_path)
    install(monkeypatch, VERSIONS[1])
    with pytest.raises(EdgeDeployError, match=f"built with TensorRT {VERSIONS[0]}"):
        load_plan(built.artifact)


def _inspect(version: str, path: Path, cc: str = "8.7") -> subprocess.CompletedProcess:
    code = ("import sys; sys.path.insert(0, 'tests/backends/tensorrt'); import pytest, trt_standin; "
            "mp = pytest.MonkeyPatch(); "
            f"trt_standin.install(mp, {version!r}, compute_capability={tuple(map(int, cc.split('.')))!r}); "
            "from edgedeploy.cli import main; sys.argv = ['edgedeploy', 'inspect', sys.argv[1]]; main()")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


@pytest.mark.parametrize("version", VERSIONS)
def test_cli_inspect_against_each_release(monkeypatch, tmp_path, version):
    install(monkeypatch, version)
    deploy_folder(tmp_path)
    build(tmp_path)
    ok = _inspect(version, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert f"this machine: TensorRT {version}" in ok.stdout and "can run this plan" in ok.stdout
    other_gpu = _inspect(version, tmp_path, cc="9.0")
    assert other_gpu.returncode == 1 and "built for compute capability 8.7; this GPU has 9.0" in other_gpu.stderr
    assert "Traceback" not in other_gpu.stderr
