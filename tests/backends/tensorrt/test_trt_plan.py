"""The TensorRT build plan, manifest and compatibility check: everything decided without TensorRT or a GPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from edgedeploy.backends import backend_settings
from edgedeploy.backends import trt_manifest, trt_plan, trt_timing
from edgedeploy.backends.tensorrt import TensorRTBackend, install_hint, probe_runtime
from edgedeploy.config import BuildSpec, TensorRTSettings, load_spec
from edgedeploy.errors import EdgeDeployError, UsageError

REPO = Path(__file__).resolve().parents[3]


def write_model(path: Path, shape=("batch", 3, 16, 16), name: str = "images") -> Path:
    """A one-Conv ONNX model whose input dimensions are given as ints (static) or strings (dim_param)."""
    dims = [d if isinstance(d, (int, str)) else None for d in shape]
    x = helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("pred", TensorProto.FLOAT, [dims[0], 4, None, None])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 1, 1], [0.1] * 12)
    node = helper.make_node("Conv", [name, "w"], ["pred"], name="conv0")
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], [w]),
                              opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def settings(**kw) -> TensorRTSettings:
    return TensorRTSettings.model_validate(kw)


def inputs(*shape, name="images"):
    return [trt_plan.InputInfo(name, tuple(shape or ("batch", 3, 64, 64)))]


def plan(precision="fp32", major=10, shape=None, out=Path("/o/demo/trt"), version=None, **kw):
    s = settings(**({} if version else {"plan_for_major": major}), **kw)
    return trt_plan.plan_build(inputs(*(shape or ())), s, precision, out, trt_version=version)


# ---------------------------------------------------------------------------------------------------- inputs

def test_inputs_from_onnx_reads_named_static_and_unnamed_dims(tmp_path):
    model = write_model(tmp_path / "m.onnx", shape=("batch", 3, 16, 16))
    proto = onnx.load(str(model))
    proto.graph.input[0].type.tensor_type.shape.dim[2].Clear()  # an unnamed dynamic dimension
    got = trt_plan.inputs_from_onnx(proto)
    assert got == [trt_plan.InputInfo("images", ("batch", 3, "images.2", 16), "float32")]
    assert trt_plan.inputs_from_onnx(model)[0].shape == ("batch", 3, 16, 16)


def test_inputs_from_the_demo_config(demo_spec):
    assert trt_plan.inputs_from_spec(demo_spec.inputs) == [trt_plan.InputInfo("images", ("batch", 3, 64, 64))]


# ------------------------------------------------------------------------------------------- precision routes

@pytest.mark.parametrize("major, precision, onnx_name, strongly, net_flags, flags, cleared", [
    (10, "fp32", "deploy.onnx", False, [], [], ["TF32"]),
    (10, "fp16", "deploy.onnx", False, [], ["FP16"], []),
    # TensorRT 10 int8: layers without Q/DQ in fp16, as `trtexec --int8 --fp16` (issue 22, finding 5)
    (10, "int8", "deploy.int8.qdq.onnx", False, [], ["INT8", "FP16"], ["TF32"]),
    (8, "fp32", "deploy.onnx", False, ["EXPLICIT_BATCH"], [], ["TF32"]),
    (8, "fp16", "deploy.onnx", False, ["EXPLICIT_BATCH"], ["FP16"], []),
    (8, "int8", "deploy.int8.qdq.onnx", False, ["EXPLICIT_BATCH"], ["INT8", "FP16"], ["TF32"]),
    (11, "fp32", "deploy.onnx", True, [], [], ["TF32"]),
    (11, "fp16", "deploy.fp16.onnx", True, [], [], []),
    (11, "int8", "deploy.int8.qdq.onnx", True, [], [], ["TF32"]),
])
def test_precision_route_per_major(major, precision, onnx_name, strongly, net_flags, flags, cleared):
    p = plan(precision, major)
    assert p.onnx_path == Path("/o/demo") / onnx_name
    assert (p.strongly_typed, list(p.network_flags), list(p.builder_flags), list(p.cleared_flags)) == \
        (strongly, net_flags, flags, cleared)
    assert p.plan_path == Path("/o/demo/trt/model.plan") and p.manifest_path == Path("/o/demo/trt/model.plan.json")
    assert p.calibration is None and p.device == "GPU"
    assert not any(f in p.builder_flags for f in ("FP16", "INT8")) or major in (8, 10)


def test_tf32_setting_keeps_tf32():
    assert plan("fp32", tf32=True).cleared_flags == ()


def test_installed_version_decides_the_major_and_the_override_must_agree():
    assert plan("fp16", version="11.4.1").onnx_path.name == "deploy.fp16.onnx"
    assert plan("fp16", version="10.3.0.30").builder_flags == ("FP16",)
    with pytest.raises(UsageError, match="plan_for_major is 11 but TensorRT 10.3.0 is installed"):
        trt_plan.plan_build(inputs(), settings(plan_for_major=11), "fp16", Path("o"), trt_version="10.3.0")
    with pytest.raises(UsageError, match="plan_for_major"):
        trt_plan.plan_build(inputs(), settings(), "fp32", Path("o"))  # no TensorRT, no override
    with pytest.raises(UsageError, match="TensorRT 8.4.3 is not supported") as e:
        trt_plan.plan_build(inputs(), settings(), "fp32", Path("o"), trt_version="8.4.3")
    assert "8.5 (JetPack 5.1.x), 8.6 (JetPack 6.0)" in str(e.value.fix)
    assert plan("fp32", version="8.6.1").network_flags == ("EXPLICIT_BATCH",)  # JetPack 6.0 (issue 22, finding 9)
    with pytest.raises(UsageError, match="not 'bf16'"):
        plan("bf16")


def test_weak_typing_deprecation_is_noted_on_trt_10_12_plus():
    assert any("deprecates weak typing" in n for n in plan("fp16", version="10.13.0").notes)
    assert not any("deprecates weak typing" in n for n in plan("fp16", version="10.3.0").notes)


def test_calibrator_route_on_trt10_plans_flags_and_keyed_cache():
    p = plan("int8", 10, int8_route="calibrator", calibrator="minmax", calibration_data="/data/calib.npz")
    assert p.onnx_path.name == "deploy.onnx" and not p.strongly_typed
    assert p.builder_flags == ("INT8", "FP16")
    assert p.calibration == trt_plan.CalibrationPlan("minmax", "IInt8MinMaxCalibrator", Path("/data/calib.npz"),
                                                     Path("/o/demo/trt/int8-minmax.cache"), 8)
    assert any("stale cache is refused" in n for n in p.notes)


def test_calibrator_route_is_refused_on_trt11():
    with pytest.raises(UsageError, match="TensorRT 11 removed the IInt8 calibrators") as e:
        plan("int8", 11, int8_route="calibrator")
    assert "int8_route: qdq" in e.value.message


# -------------------------------------------------------------------------------------------------- profiles

def test_unprofiled_batch_gets_the_default_with_a_note():
    p = plan("fp32")
    assert p.profiles == (trt_plan.TrtProfile("images", (1, 3, 64, 64), (1, 3, 64, 64), (8, 3, 64, 64)),)
    assert any("'batch' has no profile" in n for n in p.notes)


def test_profile_by_dimension_name_and_by_input_name():
    p = plan("fp32", profiles={"batch": {"min": 2, "opt": 4, "max": 16}})
    assert p.profiles[0].min == (2, 3, 64, 64) and p.profiles[0].max == (16, 3, 64, 64)
    assert not any("no profile" in n for n in p.notes)
    q = plan("fp32", shape=("n", 3, "h", "w"), profiles={
        "images": {"min": [1, 3, 32, 32], "opt": [1, 3, 64, 64], "max": [4, 3, 128, 128]}})
    assert q.profiles[0] == trt_plan.TrtProfile("images", (1, 3, 32, 32), (1, 3, 64, 64), (4, 3, 128, 128))


def test_static_inputs_need_no_profile():
    assert plan("fp32", shape=(1, 3, 64, 64)).profiles == ()


@pytest.mark.parametrize("profiles, message", [
    ({"bacth": {"min": 1, "opt": 1, "max": 1}}, "no input or dynamic dimension is called 'bacth'"),
    ({"images": {"min": 1, "opt": 1, "max": 1}}, "names an input, so min/opt/max must be full shapes"),
    ({"batch": {"min": [1], "opt": [1], "max": [1]}}, "names a dynamic dimension, so min/opt/max must be ints"),
    ({"images": {"min": [1, 3, 64], "opt": [1, 3, 64], "max": [1, 3, 64]}}, "has rank 3, the input has rank 4"),
    ({"images": {"min": [1, 3, 32, 64], "opt": [1, 3, 64, 64], "max": [1, 3, 64, 64]}}, "axis 2 is static"),
])
def test_profile_mistakes_name_the_setting(profiles, message):
    with pytest.raises(UsageError, match=message) as e:
        plan("fp32", profiles=profiles)
    assert "tensorrt.profiles" in e.value.message


def test_a_dynamic_non_leading_dimension_needs_a_profile():
    with pytest.raises(UsageError, match="dynamic dimension 'height' .* needs a profile") as e:
        plan("fp32", shape=("batch", 3, "height", 64))
    assert "tensorrt.profiles.height" in e.value.message


def test_settings_are_validated_when_the_config_loads(write_config, demo_spec):
    base = demo_spec.model_dump(mode="json", exclude={"tensorrt"})
    cases = [
        ({"profiles": {"batch": {"min": 4, "opt": 2, "max": 8}}}, "`tensorrt.profiles.batch`"),
        ({"profiles": {"batch": {"min": 1, "opt": [1], "max": 8}}}, "all be ints"),
        ({"builder_optimization_level": 6}, "`tensorrt.builder_optimization_level`"),
        ({"hardware_compatibility": "turing_plus"}, "`tensorrt.hardware_compatibility`"),
        ({"dla_core": -1}, "`tensorrt.dla_core`"),
        ({"workspace": 1024}, "unknown key `tensorrt.workspace`"),
        ({"plan_for_major": 9}, "`tensorrt.plan_for_major`"),
    ]
    for section, message in cases:
        with pytest.raises(UsageError) as e:
            load_spec(write_config({**base, "tensorrt": section}))
        assert message in e.value.message, (section, e.value.message)


def test_config_paths_resolve_relative_to_the_config_file(write_config, demo_spec, tmp_path):
    base = demo_spec.model_dump(mode="json", exclude={"tensorrt"})
    spec = load_spec(write_config({**base, "tensorrt": {"timing_cache": "cache/timing.bin",
                                                        "calibration_data": "calib.npz"}}))
    assert spec.tensorrt.timing_cache == (tmp_path / "cache/timing.bin").resolve()
    assert spec.tensorrt.calibration_data == (tmp_path / "calib.npz").resolve()


def test_pipeline_hands_the_tensorrt_section_to_the_backend(demo_spec):
    spec = demo_spec.model_copy(update={"target": "trt"})
    assert backend_settings(spec) is spec.tensorrt
    assert isinstance(BuildSpec.model_fields["tensorrt"].default_factory(), TensorRTSettings)


# ------------------------------------------------------------------------------------------------------- DLA

def test_dla_fp16_on_trt10_static_batch():
    p = plan("fp16", 10, dla_core=1, profiles={"batch": {"min": 1, "opt": 1, "max": 1}})
    assert (p.device, p.dla_core, p.gpu_fallback) == ("DLA", 1, True)
    assert p.builder_flags == ("FP16", "GPU_FALLBACK")
    assert p.profiles[0].static
    assert "DLA core 1, GPU fallback on" in p.describe_text()


def test_dla_int8_on_trt10_uses_flags_not_strong_typing():
    p = plan("int8", 10, dla_core=0, profiles={"batch": {"min": 2, "opt": 2, "max": 2}})
    assert p.onnx_path.name == "deploy.int8.qdq.onnx" and not p.strongly_typed
    assert p.builder_flags == ("INT8", "FP16", "GPU_FALLBACK") and p.network_flags == ()


def test_dla_without_gpu_fallback():
    p = plan("fp16", 10, dla_core=0, gpu_fallback=False, shape=(1, 3, 64, 64))
    assert "GPU_FALLBACK" not in p.builder_flags and any("fallback is off" in n for n in p.notes)


@pytest.mark.parametrize("kw, message", [
    ({"precision": "fp32"}, "DLA runs fp16 and int8 only"),
    ({"shape": ("batch", 3, 64, 64)}, "DLA does not support dynamic dimensions"),
    ({"hardware_compatibility": "ampere_plus", "shape": (1, 3, 64, 64)}, "applies to GPU engines"),
    ({"version": "11.3.0", "shape": (1, 3, 64, 64)}, "has no DLA on Jetson"),
])
def test_dla_restrictions(kw, message):
    precision = kw.pop("precision", "fp16")
    with pytest.raises(UsageError, match=message):
        plan(precision, 11 if "version" in kw else 10, dla_core=0, **kw)


def test_dla_on_trt11_needs_11_4_1():
    p = plan("fp16", version="11.4.1", dla_core=0, shape=(1, 3, 64, 64))
    assert p.device == "DLA" and p.builder_flags == ("GPU_FALLBACK",) and p.onnx_path.name == "deploy.fp16.onnx"
    assert any("JetPack 7.2.2" in n for n in p.notes)
    late10 = plan("fp16", version="10.9.0", dla_core=0, shape=(1, 3, 64, 64))
    assert any("10.7 as the last 10.x release with DLA" in n for n in late10.notes)


# ------------------------------------------------------------------------------------------- compatibility etc

def test_hardware_and_version_compatibility_flags():
    p = plan("fp32", hardware_compatibility="ampere_plus", version_compatible=True)
    assert p.hardware_compatibility == "ampere_plus" and p.version_compatible
    assert "VERSION_COMPATIBLE" in p.builder_flags and p.parser_flags == ("NATIVE_INSTANCENORM",)
    assert any("compute capability 8.0+" in n for n in p.notes)
    assert any("10.x and 11.x runtimes" in n for n in p.notes)
    assert any("not supported on JetPack" in n for n in p.notes)
    cmd = trt_plan.trtexec_command(p)
    assert "--hardwareCompatibilityLevel=ampere+" in cmd and "--versionCompatible" in cmd
    with pytest.raises(UsageError, match="not supported on JetPack"):
        trt_plan.plan_build(inputs(), settings(plan_for_major=10, hardware_compatibility="same_compute_capability"),
                            "fp16", Path("o"), on_jetson=True)


def test_memory_level_and_timing_cache():
    p = plan("fp16", workspace_mb=512, builder_optimization_level=5, timing_cache="/caches/t.cache")
    assert p.workspace_bytes == 512 << 20 and p.builder_optimization_level == 5
    assert p.timing_cache == Path("/caches/t.cache")
    cmd = trt_plan.trtexec_command(p, batch=1)
    assert "--memPoolSize=workspace:512M" in cmd and "--timingCacheFile=/caches/t.cache" in cmd
    assert "--shapes=images:1x3x64x64" in cmd and "--fp16" in cmd
    assert "--fp16" not in trt_plan.trtexec_command(plan("fp16", 11))


def test_describe_is_json_and_text():
    p = plan("int8", 10, int8_route="calibrator", calibration_data="/d.npz", dla_core=0,
             profiles={"batch": {"min": 1, "opt": 1, "max": 1}})
    d = json.loads(json.dumps(p.describe()))
    assert d["schema"] == trt_plan.PLAN_SCHEMA and d["tensorrt_major"] == 10 and d["precision"] == "int8"
    assert d["builder_flags"] == ["INT8", "FP16", "GPU_FALLBACK"] and d["calibration"]["class"] == \
        "IInt8EntropyCalibrator2"
    assert d["profiles"] == [{"input": "images", "min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [1, 3, 64, 64]}]
    text = p.describe_text(relative_to=Path("/o"))
    assert text.splitlines()[0] == "TensorRT 10.x · int8 → demo/trt/model.plan"
    assert "calibrator  IInt8EntropyCalibrator2" in text and "images: 1x3x64x64 (static)" in text


def test_the_planned_onnx_must_exist(tmp_path):
    p = trt_plan.plan_build(inputs(), settings(plan_for_major=11), "fp16", tmp_path / "trt")
    with pytest.raises(EdgeDeployError, match="deploy.fp16.onnx, made by the precision stage") as e:
        trt_plan.require_planned_onnx(p)
    assert e.value.where == str(tmp_path / "deploy.fp16.onnx") and e.value.exit_code == 1
    write_model(tmp_path / "deploy.fp16.onnx")
    assert trt_plan.require_planned_onnx(p) == tmp_path / "deploy.fp16.onnx"


# -------------------------------------------------------------------------------------------------- calibration

def _material(**changes):
    p = plan("int8", 10, int8_route="calibrator", calibration_data="/d.npz")
    base = dict(model_sha256="m" * 64, data_sha256="d" * 64, plan=p, libraries={"tensorrt": "10.3.0"})
    base.update(changes)
    return trt_plan.calibration_key_material(**base)


def test_calibration_key_covers_model_data_settings_and_versions():
    key = trt_plan.calibration_key(_material())
    assert key == trt_plan.calibration_key(_material())
    other_settings = plan("int8", 10, int8_route="calibrator", calibration_batch_size=4)
    for changed in (_material(model_sha256="x" * 64), _material(data_sha256="y" * 64),
                    _material(libraries={"tensorrt": "10.4.0"}), _material(plan=other_settings)):
        assert trt_plan.calibration_key(changed) != key


def test_calibration_cache_is_reused_only_when_its_key_matches(tmp_path):
    cache = tmp_path / "int8.cache"
    material = _material()
    assert trt_plan.check_calibration_cache(cache, material) is False  # none yet: calibrate
    cache.write_bytes(b"TRT-1003-EntropyCalibration2\n")
    with pytest.raises(EdgeDeployError, match="no key file"):
        trt_plan.check_calibration_cache(cache, material)
    (tmp_path / "int8.cache.json").write_text(json.dumps(trt_plan.calibration_key_record(material, cache)))
    assert trt_plan.check_calibration_cache(cache, material) is True
    with pytest.raises(EdgeDeployError, match="stale calibration cache: data_sha256 changed") as e:
        trt_plan.check_calibration_cache(cache, _material(data_sha256="z" * 64))
    assert e.value.where == str(cache) and "delete it" in e.value.message


# ------------------------------------------------------------------------------------------------- manifest

def manifest(version="10.3.0", cc="8.7", hardware="none", version_compatible=False, device="GPU", **extra):
    m = {"schema": trt_manifest.MANIFEST_SCHEMA, "plan": "model.plan", "plan_sha256": "0", "plan_bytes": 10,
         "onnx": "deploy.onnx", "onnx_sha256": "1", "precision": "fp16", "route": "fp32 deploy graph",
         "tensorrt": {"version": version, "major": int(version.split(".")[0])},
         "gpu": {"name": "Orin", "compute_capability": cc}, "platform": {"machine": "aarch64", "jetson": True},
         "compatibility": {"hardware": hardware, "version_compatible": version_compatible},
         "device": {"type": device, "dla_core": 0 if device == "DLA" else None, "gpu_fallback": device == "DLA",
                    "gpu_fallback_layers": [{"name": "Resize_3", "type": "RESIZE"}] if device == "DLA" else []},
         "flags": {"strongly_typed": False, "builder": ["FP16"], "cleared": [], "network": [], "parser": []},
         "io_tensors": [{"name": "images", "mode": "input", "dtype": "float32", "shape": [-1, 3, 64, 64],
                         "profile": {"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [8, 3, 64, 64]}}]}
    m.update(extra)
    return m


@pytest.mark.parametrize("m, runtime, cc, ok, message", [
    (manifest(), "10.3.0", "8.7", True, None),
    (manifest(), "10.3.0.30", (8, 7), True, None),
    (manifest(), "10.4.0", "8.7", False, "built with TensorRT 10.3.0 and this machine has TensorRT 10.4.0"),
    (manifest(), "10.3.0", "8.6", False, "built for compute capability 8.7; this GPU has 8.6"),
    (manifest(version_compatible=True), "10.8.0", "8.7", True, None),
    (manifest(version_compatible=True), "11.4.1", "8.7", True, None),
    (manifest(version="10.8.0", version_compatible=True), "10.3.0", "8.7", False, "not on 10.3.0"),
    (manifest(version="11.0.0", version_compatible=True), "10.9.0", "8.7", False, "not on 10.9.0"),
    (manifest(version="8.6.1", version_compatible=True), "11.4.1", "8.7", False, "cannot run on TensorRT 11"),
    (manifest(hardware="ampere_plus", cc="8.0"), "10.3.0", "9.0", True, None),
    (manifest(hardware="ampere_plus", cc="8.6"), "10.3.0", "7.5", False, "Ampere and newer"),
    (manifest(hardware="same_compute_capability", cc="8.6"), "10.3.0", "8.6", True, None),
    (manifest(hardware="same_compute_capability", cc="8.6"), "10.3.0", "8.9", False, "same compute capability"),
    (manifest(device="DLA"), "10.3.0", "7.2", False, "DLA plan was built on a device with compute capability 8.7"),
    (manifest(), None, None, True, None),
])
def test_check_plan_compatible(m, runtime, cc, ok, message):
    result = trt_manifest.check_plan_compatible(m, runtime, cc)
    assert result.ok is ok, result.problems
    if message:
        assert any(message in p for p in result.problems), result.problems


def test_unchecked_parts_are_noted_and_an_incompatible_plan_raises():
    result = trt_manifest.check_plan_compatible(manifest(), None, None)
    assert any("TensorRT version not checked" in n for n in result.notes)
    assert any("GPU not checked" in n for n in result.notes)
    with pytest.raises(EdgeDeployError, match="TensorRT 10.3.0 and this machine has TensorRT 11.4.1") as e:
        trt_manifest.ensure_plan_compatible(manifest(), "11.4.1", "8.7", where="x/model.plan")
    assert e.value.where == "x/model.plan" and "rebuild the engine on this machine" in e.value.message
    assert trt_manifest.check_plan_compatible(manifest(tensorrt={}), "10.3.0", "8.7").ok is False


@pytest.mark.parametrize("raw, text", [((8, 7), "8.7"), ("8.7", "8.7"), ("sm_87", "8.7"), (72, "7.2"),
                                       ("10.0", "10.0"), (None, None)])
def test_format_cc(raw, text):
    assert trt_manifest.format_cc(raw) == text


def write_plan_folder(folder: Path, m: dict | None = None) -> Path:
    trt_dir = folder / "trt"
    trt_dir.mkdir(parents=True)
    (trt_dir / "model.plan").write_bytes(b"not really an engine")
    m = dict(m or manifest())
    m["plan_sha256"] = __import__("edgedeploy.fileio", fromlist=["x"]).sha256_file(trt_dir / "model.plan")
    (trt_dir / "model.plan.json").write_text(json.dumps(m))
    return trt_dir / "model.plan"


def test_manifest_is_found_from_plan_manifest_or_folder(tmp_path):
    plan_file = write_plan_folder(tmp_path / "out")
    for path in (plan_file, plan_file.with_name("model.plan.json"), tmp_path / "out"):
        m, mpath = trt_manifest.read_manifest(path)
        assert mpath == plan_file.with_name("model.plan.json") and m["tensorrt"]["version"] == "10.3.0"
    assert trt_manifest.plan_file_problem(m, mpath) is None
    plan_file.write_bytes(b"tampered")
    assert "changed since its manifest" in trt_manifest.plan_file_problem(m, mpath)
    write_plan_folder(tmp_path / "out" / "second")
    with pytest.raises(UsageError, match="2 TensorRT plans in this folder"):
        trt_manifest.locate_manifest(tmp_path / "out")
    bare = tmp_path / "bare.plan"
    bare.write_bytes(b"x")
    with pytest.raises(UsageError, match="has no manifest"):
        trt_manifest.locate_manifest(bare)
    (tmp_path / "bad.plan.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(UsageError, match="not an edgedeploy TensorRT manifest"):
        trt_manifest.read_manifest(tmp_path / "bad.plan.json")
    with pytest.raises(UsageError, match="no such plan"):
        trt_manifest.locate_manifest(tmp_path / "missing.plan")


def test_build_manifest_records_what_the_plan_needs(tmp_path):
    plan_file = tmp_path / "trt" / "model.plan"
    plan_file.parent.mkdir()
    plan_file.write_bytes(b"engine")
    onnx_file = write_model(tmp_path / "deploy.onnx")
    p = plan("fp16", version="10.3.0", out=tmp_path / "trt", version_compatible=True)
    m = trt_manifest.build_manifest(
        plan_description=p.describe(), plan_path=plan_file, onnx_path=onnx_file, trt_version="10.3.0",
        gpu={"name": "Orin", "compute_capability": (8, 7), "cuda_driver": "12.6"},
        platform={"machine": "aarch64", "jetson": True}, io_tensors=[{"name": "images", "mode": "input"}],
        build_seconds=1.5)
    assert m["schema"] == trt_manifest.MANIFEST_SCHEMA and m["plan"] == "model.plan"
    assert m["tensorrt"] == {"version": "10.3.0", "major": 10}
    assert m["gpu"] == {"name": "Orin", "compute_capability": "8.7", "cuda_driver": "12.6"}
    assert m["compatibility"] == {"hardware": "none", "version_compatible": True}
    assert m["flags"]["builder"] == ["FP16", "VERSION_COMPATIBLE"] and m["flags"]["parser"] == ["NATIVE_INSTANCENORM"]
    assert json.loads(json.dumps(m)) == m
    assert trt_manifest.check_plan_compatible(m, "10.4.0", "8.7").ok
    text = trt_manifest.format_manifest(manifest(device="DLA"))
    assert "DLA core 0, GPU fallback on; 1 layer(s) on the GPU" in text and "Resize_3 (RESIZE)" in text


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgedeploy.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def test_cli_inspect_prints_the_manifest_and_refuses_a_changed_plan(tmp_path):
    here = probe_runtime()  # without TensorRT: version and GPU unknown, so the plan is only described
    m = manifest(version=here["trt_version"] or "10.3.0",
                 cc=(here["gpu"] or {}).get("compute_capability") or "8.7")
    plan_file = write_plan_folder(tmp_path / "out", m)
    result = run_cli("inspect", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert f"TensorRT    {m['tensorrt']['version']}" in result.stdout
    assert "compat      hardware none; version-compatible no" in result.stdout
    assert ("not checked" in result.stdout) == (here["trt_version"] is None)
    as_json = run_cli("inspect", str(plan_file), "--json")
    assert json.loads(as_json.stdout)["plan"] == "model.plan"
    plan_file.write_bytes(b"tampered")
    bad = run_cli("inspect", str(plan_file))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert "changed since its manifest was written" in bad.stderr


def test_cli_inspect_of_a_folder_without_a_plan_is_a_usage_error(tmp_path):
    result = run_cli("inspect", str(tmp_path))
    assert result.returncode == 2 and "no TensorRT plan manifest" in result.stderr


# ---------------------------------------------------------------------------------------------------- timing

def test_summarize_ms_reports_trtexec_style_percentiles():
    s = trt_timing.summarize_ms([float(x) for x in range(1, 101)])
    assert (s["min_ms"], s["median_ms"], s["p90_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"]) == \
        (1.0, 50.5, 90.0, 95.0, 99.0, 100.0)
    assert s["mean_ms"] == 50.5 and s["unstable"] is True
    steady = trt_timing.summarize_ms([1.0, 1.01, 0.99, 1.0])
    assert steady["unstable"] is False and steady["cov"] < 0.01
    with pytest.raises(ValueError):
        trt_timing.summarize_ms([])


def test_parse_trtexec_summary():
    # shaped like trtexec's performance summary (synthetic numbers)
    log = """[11/03/2026-10:00:01] [I] === Performance summary ===
[11/03/2026-10:00:01] [I] Throughput: 2481.3 qps
[11/03/2026-10:00:01] [I] Latency: min = 0.45 ms, max = 0.9 ms, mean = 0.5 ms, median = 0.49 ms, percentile(90%) = 0.52 ms, percentile(95%) = 0.55 ms, percentile(99%) = 0.7 ms
[11/03/2026-10:00:01] [I] Enqueue Time: min = 0.1 ms, max = 0.3 ms, mean = 0.12 ms, median = 0.11 ms, percentile(90%) = 0.13 ms, percentile(95%) = 0.14 ms, percentile(99%) = 0.2 ms
[11/03/2026-10:00:01] [I] H2D Latency: min = 0.01 ms, max = 0.05 ms, mean = 0.02 ms, median = 0.02 ms, percentile(90%) = 0.03 ms, percentile(95%) = 0.03 ms, percentile(99%) = 0.04 ms
[11/03/2026-10:00:01] [I] GPU Compute Time: min = 0.38 ms, max = 0.8 ms, mean = 0.41 ms, median = 0.4 ms, percentile(90%) = 0.43 ms, percentile(95%) = 0.45 ms, percentile(99%) = 0.6 ms
[11/03/2026-10:00:01] [I] D2H Latency: min = 0.02 ms, max = 0.06 ms, mean = 0.03 ms, median = 0.03 ms, percentile(90%) = 0.04 ms, percentile(95%) = 0.04 ms, percentile(99%) = 0.05 ms
"""
    got = trt_timing.parse_trtexec(log)
    assert got["throughput_qps"] == 2481.3
    assert got["gpu_compute"]["median_ms"] == 0.4 and got["gpu_compute"]["p99_ms"] == 0.6
    assert got["latency"]["min_ms"] == 0.45 and got["h2d"]["mean_ms"] == 0.02 and got["d2h"]["p90_ms"] == 0.04
    assert got["enqueue"]["max_ms"] == 0.3


# ------------------------------------------------------------------------------------------ missing SDK, dry run

def test_backend_reports_what_to_install_when_tensorrt_is_missing():
    try:
        import tensorrt  # noqa: F401
        installed = True
    except (ImportError, OSError):
        installed = False
    assert (TensorRTBackend().missing() is None) == installed
    assert "TensorRT is not installed" in install_hint()
    if not installed:
        with pytest.raises(EdgeDeployError, match="TensorRT is not installed"):
            TensorRTBackend().build(Path("deploy.onnx"), Path("trt"), "fp32")


def test_selfcheck_dry_run_prints_plans_for_trt10_and_trt11():
    result = subprocess.run([sys.executable, str(REPO / "tools" / "trt_selfcheck.py"), "--dry-run"],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for major in (10, 11):
        for precision in ("fp32", "fp16", "int8"):
            assert f"TensorRT {major}.x · {precision} → demo-trt-{precision}/trt/model.plan" in out
    assert "refused" not in out
    assert "demo-trt-fp16/deploy.fp16.onnx (fp16-cast graph from the precision stage)" in out
    assert "builder     flags: FP16;" in out and "creation flags: STRONGLY_TYPED" not in out
    assert "builder     flags: INT8, FP16;" in out  # int8 with fp16 for layers without Q/DQ (--int8 --fp16)
    assert "profile     images: min 1x3x64x64, opt 1x3x64x64, max 8x3x64x64" in out
    assert "trtexec --onnx=" in out
