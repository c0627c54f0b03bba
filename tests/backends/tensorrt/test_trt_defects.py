"""The nine TensorRT defects of issue 13, one test each (each fails on the code before the fix), checked against the
conformance stand-in of NVIDIA's own API surfaces (see trt_standin/ beside this file) and trtexec's flags from its
sources.

1. trtexec lines dropped static profiles (min = opt = max) and the self-check hard-coded batch 1.
2. a stale or corrupt timing cache (create_timing_cache → None) crashed set_timing_cache with a TypeError.
3. HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY was planned for TensorRT < 10.9 and for pre-Turing GPUs.
4. the stream handle came from int() (which cuda-python replaces) or getPtr() (the wrong number).
5. a logger per runner, though TensorRT keeps one per process: later runners lost TensorRT's errors.
6. the calibrator leaked device buffers and TensorRT swallowed exceptions raised in get_batch.
7. the calibrator route's trtexec line had no --calib: trtexec calibrated on random data.
8. bf16/fp8/int4 I/O made trt.nptype raise TypeError; set_tensor_address's False was ignored.
9. DLA builds did not set OnnxParserFlag.ADJUST_FOR_DLA; the install hint denied JetPack 7.2's pip wheels.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from trt_standin import install, load_surface, surface_versions
from trt_standin.cuda import cudaStream_t
from trt_standin.models import bf16_io_model, calibration_npz, conv_model, deploy_folder, feeds

from edgedeploy.backends import tensorrt as trt_backend
from edgedeploy.backends import trt_cuda, trt_plan
from edgedeploy.backends.tensorrt import TensorRTBackend, load_plan
from edgedeploy.config import TensorRTSettings
from edgedeploy.errors import EdgeDeployError, UsageError

REPO = Path(__file__).resolve().parents[3]
# the implicit calibrator's members are deprecated since TensorRT 10.1; the route uses them on purpose
CALIBRATOR_DEPRECATED = pytest.mark.filterwarnings("ignore:Use Deprecated in TensorRT 10.1:DeprecationWarning")
VERSIONS = surface_versions()
MAJOR10 = [v for v in VERSIONS if v.startswith("10.")]
INPUTS = [trt_plan.InputInfo("images", ("batch", 3, 64, 64))]


def settings(**kw) -> TensorRTSettings:
    return TensorRTSettings.model_validate(kw)


def plan(precision="fp32", version=None, major=10, **kw) -> trt_plan.TrtBuildPlan:
    s = settings(**({} if version else {"plan_for_major": major}), **kw)
    return trt_plan.plan_build(INPUTS, s, precision, Path("/o/demo/trt"), trt_version=version)


def full_version(short: str) -> str:
    return load_surface(short)["tensorrt"]["version"]


def selfcheck():
    spec = importlib.util.spec_from_file_location("trt_selfcheck", REPO / "tools" / "trt_selfcheck.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FAKE_TRTEXEC = """#!{python}
# A trtexec stand-in for the test: it checks its command line against trtexec's flags from NVIDIA's sources (the
# committed surface) and that --shapes lies inside the stated profile; it builds and times nothing.
import json, sys
flags = set(json.load(open({surface!r}))["trtexec"]["flags"])
args = dict(a.split("=", 1) if "=" in a else (a, "") for a in sys.argv[1:])
unknown = sorted(set(args) - flags)
if unknown:
    sys.exit("unknown flags " + " ".join(unknown))
dims = lambda text: {{k: [int(x) for x in v.split("x")] for k, v in (p.split(":") for p in text.split(","))}}
lo, hi = dims(args.get("--minShapes", "")) if "--minShapes" in args else {{}}, dims(args.get("--maxShapes", "x:0"))
for name, shape in (dims(args["--shapes"]).items() if "--shapes" in args else []):
    if name not in lo or any(not a <= s <= b for a, s, b in zip(lo[name], shape, hi[name])):
        sys.exit(f"--shapes {{name}} {{shape}} is outside the stated profile")
print("trtexec stand-in: command line accepted (nothing was built or timed)")
"""


# ----------------------------------------------------------------------------------------------------- 1
def test_defect1_trtexec_states_static_profiles_and_selfcheck_times_batches_the_plan_accepts(tmp_path, monkeypatch):
    dla = plan("fp16", version=full_version(MAJOR10[0]), dla_core=0, profiles={"batch": {"min": 2, "opt": 2, "max": 2}})
    cmd = trt_plan.trtexec_command(dla)
    assert "--minShapes=images:2x3x64x64" in cmd and "--optShapes=images:2x3x64x64" in cmd
    assert "--maxShapes=images:2x3x64x64" in cmd
    with pytest.raises(UsageError, match="batch 1 is outside the plan's batch range 2..2"):
        trt_plan.trtexec_command(dla, batch=1)
    tool = selfcheck()
    assert tool.bench_batches(dla, INPUTS) == (2,)
    assert tool.bench_batches(plan("fp32", version=full_version(MAJOR10[0])), INPUTS) == (1, 8)
    fake = tmp_path / "bin" / "trtexec"
    fake.parent.mkdir()
    surface = Path(__file__).resolve().parent / "trt_surfaces" / f"{MAJOR10[0]}.json"
    fake.write_text(FAKE_TRTEXEC.format(python=sys.executable, surface=str(surface)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    result = tool._trtexec(dla, 2, tmp_path)
    assert result["status"] == "ok", (tmp_path / "trtexec.log").read_text()
    assert "--shapes=images:2x3x64x64" in result["command"]


# ----------------------------------------------------------------------------------------------------- 2
@pytest.mark.parametrize("version", VERSIONS)
def test_defect2_a_stale_timing_cache_starts_a_fresh_one(monkeypatch, tmp_path, version):
    install(monkeypatch, version)
    deploy_folder(tmp_path)
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"a timing cache from another TensorRT, or a truncated one")
    built = TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32",
                                    settings(timing_cache=str(cache)))
    assert "unreadable" in built.info["timing_cache"] and "started a fresh cache" in built.info["timing_cache"]
    assert cache.read_bytes().startswith(b"EDGEDEPLOY-TRT-STANDIN-TIMING-CACHE")  # replaced by the fresh one
    install(monkeypatch, version, timing_cache_none=True)  # TensorRT cannot even make an empty one
    with pytest.raises(EdgeDeployError, match="could not create a timing cache"):
        TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt2", "fp32", settings())


# ----------------------------------------------------------------------------------------------------- 3
def test_defect3_same_compute_capability_needs_tensorrt_10_9_and_a_turing_gpu(monkeypatch, tmp_path):
    with pytest.raises(UsageError, match="needs TensorRT 10.9 or newer; TensorRT 10.3.0.26 has only none and "
                                         "ampere_plus"):
        plan(version=full_version("10.3"), hardware_compatibility="same_compute_capability")
    assert any("needs TensorRT 10.9+" in n for n in plan(hardware_compatibility="same_compute_capability").notes)
    newest = next(v for v in reversed(MAJOR10))
    install(monkeypatch, newest, compute_capability=(7, 0))  # a Volta GPU
    deploy_folder(tmp_path)
    with pytest.raises(UsageError, match="must be built on a Turing or newer GPU"):
        TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32",
                                settings(hardware_compatibility="same_compute_capability"))
    install(monkeypatch, newest, compute_capability=(7, 5))
    built = TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32",
                                    settings(hardware_compatibility="same_compute_capability"))
    assert built.info["hardware_compatibility"] == "same_compute_capability"


# ----------------------------------------------------------------------------------------------------- 4
def test_defect4_the_stream_handle_is_the_native_value_never_getptr(monkeypatch):
    model = install(monkeypatch, VERSIONS[-1], flavour="strict")
    _, stream = model.cuda.cudaStreamCreate()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # cuda-python replaces int(handle)
        assert trt_cuda.handle(stream) == stream.native

    class WithoutInt(cudaStream_t):  # a handle type int() cannot read
        __int__ = None

    odd = WithoutInt(0x7E0000F0)
    assert odd.getPtr() != odd.native  # getPtr() is where the object stores the handle, not the handle
    assert trt_cuda.handle(odd) == odd.native
    install(monkeypatch, VERSIONS[-1], flavour="12.6")  # no get_cuda_native_handle yet: int() is the way
    _, old = trt_cuda.runtime().cudaStreamCreate()
    assert trt_cuda.handle(old) == old.native


# ----------------------------------------------------------------------------------------------------- 5
@pytest.mark.parametrize("version", VERSIONS)
def test_defect5_one_logger_per_process_so_later_runners_keep_tensorrts_errors(monkeypatch, tmp_path, version):
    model = install(monkeypatch, version)
    deploy_folder(tmp_path)
    built = TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32", settings())
    first, second = load_plan(built.artifact), load_plan(built.artifact)
    model.execute_fails = "IExecutionContext::enqueueV3: Error Code 1: Cuda Runtime (an illegal memory access)"
    for runner in (first, second):
        with pytest.raises(EdgeDeployError, match=r"execution failed: IExecutionContext::enqueueV3: Error Code 1"):
            runner.run(feeds(2))
        runner.close()
    assert not [m for m in model.messages if "different logger" in m[1]]


# ----------------------------------------------------------------------------------------------------- 6
@CALIBRATOR_DEPRECATED
@pytest.mark.parametrize("version", MAJOR10)
def test_defect6_calibrator_failures_surface_and_its_buffers_are_freed(monkeypatch, tmp_path, version):
    model = install(monkeypatch, version)
    deploy_folder(tmp_path)
    data = calibration_npz(tmp_path / "calib.npz", samples=24)
    s = settings(int8_route="calibrator", calibration_data=str(data), calibration_batch_size=8)
    built = TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "int8", s)
    assert ("calibration", "batches", 3) in model.calls
    assert not model.cuda.device, "calibration device buffers leaked"
    model.cuda.fail["cudaMemcpy"] = 1  # the second batch's upload fails inside get_batch
    (tmp_path / "trt" / "int8-entropy2.cache").unlink()
    (tmp_path / "trt" / "int8-entropy2.cache.json").unlink()
    with pytest.raises(EdgeDeployError, match=r"INT8 calibration failed at batch 2 of 3: CUDA call cudaMemcpy.*failed"):
        TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "int8", s)
    assert built.artifact.is_file() and not model.cuda.device


# ----------------------------------------------------------------------------------------------------- 7
def test_defect7_the_calibrator_routes_trtexec_line_reads_the_calibration_cache():
    p = plan("int8", version=full_version(MAJOR10[0]), int8_route="calibrator", calibration_data="/d/calib.npz")
    cmd = trt_plan.trtexec_command(p)
    assert "--int8" in cmd and f"--calib={p.calibration.cache}" in cmd
    flags = set(load_surface(MAJOR10[0])["trtexec"]["flags"])
    assert {c.split("=")[0] for c in cmd[1:]} <= flags


# ----------------------------------------------------------------------------------------------------- 8
@pytest.mark.parametrize("version", VERSIONS)
def test_defect8_io_numpy_cannot_hold_and_refused_addresses_are_clear_errors(monkeypatch, tmp_path, version):
    model = install(monkeypatch, version)
    bf16_io_model(tmp_path / "deploy.onnx")
    if model.major == 8:  # no BF16 in TensorRT 8: the parser refuses the input, named
        with pytest.raises(EdgeDeployError, match="input images has a type TensorRT 8.* does not support"):
            TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32", settings())
    else:
        built = TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32", settings())
        with pytest.raises(EdgeDeployError, match="tensor 'images' is BF16, which numpy has no type for"):
            load_plan(built.artifact)
    model = install(monkeypatch, version, tensor_address_false=True)
    conv_model(tmp_path / "ok" / "deploy.onnx")
    built = TensorRTBackend().build(tmp_path / "ok" / "deploy.onnx", tmp_path / "ok" / "trt", "fp32", settings())
    with pytest.raises(EdgeDeployError, match="refused the device address of tensor 'images'.*Error Code 3"):
        load_plan(built.artifact)
    assert not model.cuda.device and not model.cuda.pinned and not model.cuda.streams


# ----------------------------------------------------------------------------------------------------- 9
@pytest.mark.parametrize("version", MAJOR10)
def test_defect9_dla_builds_set_adjust_for_dla_where_it_exists(monkeypatch, tmp_path, version):
    model = install(monkeypatch, version, dla_cores=1)
    deploy_folder(tmp_path)
    TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp16",
                            settings(dla_core=0, profiles={"batch": {"min": 1, "opt": 1, "max": 1}}))
    has_flag = "ADJUST_FOR_DLA" in load_surface(version)["python"]["enums"]["OnnxParserFlag"]["members"]
    assert (("parser.set_flag", "ADJUST_FOR_DLA") in model.calls) == has_flag
    assert has_flag == (version != "10.3")


def test_defect9_the_install_hint_names_jetpack_7s_pip_wheels(monkeypatch):
    monkeypatch.setattr(trt_backend.platform, "machine", lambda: "aarch64")
    hint = trt_backend.install_hint()
    assert "JetPack 7.2.2+" in hint and "pip install tensorrt" in hint and "JetPack 6" in hint
    docs = (REPO / "docs" / "tensorrt.md").read_text()
    assert "https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/installing-tensorrt/install-pip.html" in docs


# ------------------------------------------------------------------------------------- every trtexec line
def _variants(major: int, version: str | None):
    dla_ok = major in (8, 10)
    # TensorRT 8.5 has no optimization level or compatibility modes (a TensorRT 8 dry run plans for 8.5 too)
    trt85 = major == 8 and (version is None or trt_plan.parse_version(version)[:2] == (8, 5))
    yield "fp32", {}
    yield "fp16", {}
    yield "int8", {}
    yield "fp32", {"profiles": {"batch": {"min": 2, "opt": 4, "max": 16}}, "workspace_mb": 256,
                   "timing_cache": "/c/t.cache", **({} if trt85 else {"builder_optimization_level": 5})}
    if not trt85:
        yield "fp32", {"hardware_compatibility": "ampere_plus", "version_compatible": True}
    if major == 11 or (major == 10 and (version is None or trt_plan.parse_version(version)[:2] >= (10, 9))):
        yield "fp16", {"hardware_compatibility": "same_compute_capability"}
    if dla_ok:
        static = {"profiles": {"batch": {"min": 1, "opt": 1, "max": 1}}}
        yield "fp16", {"dla_core": 0, **static}
        yield "int8", {"dla_core": 1, "gpu_fallback": False, **static}
        yield "int8", {"int8_route": "calibrator", "calibration_data": "/d/calib.npz"}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_trtexec_line_uses_its_releases_flags_and_states_every_profile(version):
    surface = load_surface(version)
    flags, values = set(surface["trtexec"]["flags"]), surface["trtexec"]["values"]
    major = surface["tensorrt"]["major"]
    for planned_version in (surface["tensorrt"]["version"], None):
        for precision, kw in _variants(major, planned_version):
            p = plan(precision, version=planned_version, major=major, **kw)
            cmd = trt_plan.trtexec_command(p, batch=trt_plan.batch_range(p)[1], engine_out=Path("/o/e.plan"))
            args = dict(a.split("=", 1) if "=" in a else (a, "") for a in cmd[1:])
            assert set(args) <= flags, (precision, kw, sorted(set(args) - flags))
            for flag, allowed in values.items():
                if flag in args and planned_version is not None:
                    assert args[flag].lower() in allowed, (flag, args[flag])
            stated = args["--minShapes"].split(",")
            assert [s.split(":")[0] for s in stated] == [q.input for q in p.profiles]
            assert json.dumps(p.describe())  # the plan behind the line is serializable, as --dry-run prints it


def test_selfcheck_dry_run_states_profiles_for_every_plan():
    import subprocess

    result = subprocess.run([sys.executable, str(REPO / "tools" / "trt_selfcheck.py"), "--dry-run"],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith("trtexec ")]
    assert len(lines) == 6 and all("--minShapes=images:1x3x64x64" in line for line in lines)


def test_runner_dtypes_cover_what_numpy_holds(monkeypatch, tmp_path):
    install(monkeypatch, VERSIONS[-1])
    deploy_folder(tmp_path)
    runner = load_plan(TensorRTBackend().build(tmp_path / "deploy.onnx", tmp_path / "trt", "fp32",
                                               settings()).artifact)
    assert runner.dtypes == {"images": np.dtype(np.float32), "pred": np.dtype(np.float32)}
    runner.close()
