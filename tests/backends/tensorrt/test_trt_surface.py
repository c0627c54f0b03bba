"""tools/trt_surface.py: reading TensorRT's pybind11 binding sources, package __init__.py and trtexec's option parser
into facts, from a work tree or a git ref; and the committed surfaces it wrote (trt_surfaces/ beside this file)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
SURFACES = Path(__file__).resolve().parent / "trt_surfaces"


def tool():
    """tools/trt_surface.py as a module (registered, as its dataclasses need)."""
    if "trt_surface" not in sys.modules:
        spec = importlib.util.spec_from_file_location("trt_surface", REPO / "tools" / "trt_surface.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["trt_surface"] = module
        spec.loader.exec_module(module)
    return sys.modules["trt_surface"]


VERSION_H = """#define TRT_MAJOR_ENTERPRISE 12
#define TRT_MINOR_ENTERPRISE 4
#define TRT_PATCH_ENTERPRISE 0
#define TRT_BUILD_ENTERPRISE 7
"""
HEADER = """class IThing
{
public:
    int32_t getCount() const noexcept { return mImpl->getCount(); }
    bool setName(char const* name) noexcept;
};
"""
BINDINGS = r"""
namespace tensorrt {
namespace lambdas {
static const auto thing_scale = [](IThing& self, float factor, int32_t offset) { return self.getCount() > 0; };
} // namespace lambdas
class PyWidget : public IWidget
{
    void poke(int32_t x) noexcept override { PYBIND11_OVERLOAD_PURE_NAME(void, IWidget, "poke", poke, x); }
};
void bindCore(py::module& m)
{
    // "a comment with a quote
    py::enum_<Color>(m, "Color", py::arithmetic{}, ColorDoc::descr)
        .value("RED", Color::kRED) /* "block" */
        .value("GREEN", Color::kGREEN);
#if EXPORT_ALL_BINDINGS
    py::class_<IThing>(m, "Thing", ThingDoc::descr, py::module_local())
        .def(py::init<int32_t, float>(), "count"_a, "scale"_a = 1.0f)
        .def("get_count", &IThing::getCount)
        .def("scale", lambdas::thing_scale)
        .def("rename", utils::deprecateMember(&IThing::setName, "Thing.name"), py::arg("name"))
        .def_property("name", &IThing::getName, &IThing::setName)
        .def_property_readonly("size", &IThing::getSize)
        .def_property("secret", nullptr, &IThing::setSecret);
#endif
#if ENABLE_INETWORK_SERIALIZE
    py::class_<IHidden>(m, "Hidden");
#endif
    py::class_<IWidget, PyWidget> widget{m, "IWidget"};
    py::enum_<IWidget::Mode>(widget, "Mode").value("ON", IWidget::Mode::kON).export_values();
    widget.def(py::init<>()).def("poke", &IWidget::poke, "x"_a);
    py::class_<Gadget, IWidget>(m, "Gadget").def(py::init<>());
    m.attr("red") = Color::kRED;
    m.def("get_version", &getVersion);
}
} // namespace tensorrt
"""
PACKAGE_INIT = '''from .##TENSORRT_MODULE## import *
__version__ = "##TENSORRT_PYTHON_VERSION##"
if "##TENSORRT_MODULE##" == "tensorrt":
    Thing.__enter__ = lambda self: self
for attr, value in IWidget.Mode.__members__.items():
    setattr(Gadget, attr, value)
def nptype(trt_type):
    import numpy as np
    mapping = {red: np.float32}
    return mapping[trt_type]
'''
OPTIONS = """
void BuildOptions::parse(Arguments& arguments)
{
    getAndDelOption(arguments, "--fp16", fp16);
    std::string level;
    getAndDelOption(arguments, "--level", level);
    if (level == "low") {} else if (samplesCommon::toLower(level) == "high") {}
    // getAndDelOption(arguments, "--commented", x);
}
void SafeBuilderOptions::parse(Arguments& arguments) { getAndDelOption(arguments, "--safeOnly", x); }
bool parseHelp(Arguments& arguments) { return getAndDelOption(arguments, "--help", helpAsked); }
bool getRefPairs(Arguments& arguments, std::vector<RefPair>& refPairs)
{
    return getAndDelOptionWithPosition(arguments, "--refPair", index, pos);
}
void UffInput::parse(Arguments& arguments) { getAndDelOption(arguments, "--uffInput", x); }
void InferenceOptions::parse(Arguments& arguments)
{
    if (!getRefPairs(arguments, refPairs)) {}
}
void AllOptions::parse(Arguments& arguments)
{
    build.parse(arguments);
    inference.parse(arguments);
    uffInputs.parse(arguments);
}
"""


def checkout(root: Path, bindings: str = BINDINGS) -> Path:
    files = {"include/NvInferVersion.h": VERSION_H, "include/NvInfer.h": HEADER,
             "python/src/infer/pyCore.cpp": bindings,
             "python/packaging/bindings_wheel/tensorrt/__init__.py": PACKAGE_INIT,
             "samples/common/sampleOptions.cpp": OPTIONS}
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_reads_classes_enums_arguments_and_trtexec_flags(tmp_path):
    surface = tool().build_surface(tool().Source(checkout(tmp_path), None))
    assert surface["tensorrt"] == {"version": "12.4.0.7", "major": 12, "minor": 4}
    py = surface["python"]
    thing = py["classes"]["Thing"]
    assert thing["init"] == [{"params": [{"name": "count", "default": False}, {"name": "scale", "default": True}],
                              "arity": 2, "types": ["int", "float"]}]  # py::init<int32_t, float>
    assert thing["methods"]["get_count"] == [{"params": None, "arity": 0}]  # arity from the header
    # arity and parameter types from the lambda, less self
    assert thing["methods"]["scale"] == [{"params": None, "arity": 2, "types": ["float", "int"]}]
    assert thing["methods"]["rename"] == [{"params": [{"name": "name", "default": False}], "arity": 1,
                                           "types": ["str"], "deprecated": "Thing.name"}]  # types from the header

    assert thing["properties"] == {"name": {"get": True, "set": True}, "size": {"get": True, "set": False},
                                   "secret": {"get": False, "set": True}}
    assert thing["python_attributes"] == ["__enter__"]
    assert "Hidden" not in py["classes"]  # ENABLE_INETWORK_SERIALIZE is off in released packages
    assert py["classes"]["IWidget"]["overridable"] == {"poke": {"pure": True, "args": 1}}
    assert py["classes"]["Gadget"]["bases"] == ["IWidget"] and py["classes"]["Gadget"]["enum_members_of"] == \
        "IWidget.Mode"
    assert py["enums"]["Color"] == {"members": ["RED", "GREEN"], "arithmetic": True}
    assert py["enums"]["IWidget.Mode"] == {"members": ["ON"], "arithmetic": False, "export_values": True}
    assert py["attributes"] == {"red": {"enum": "Color", "member": "RED"}}
    assert py["nptype"] == {"RED": "float32"}
    assert set(py["functions"]) == {"get_version", "nptype"}
    # flags read by helpers the parse functions call (11.1's getRefPairs) and by 8.x's singular UffInput::parse
    assert surface["trtexec"] == {"flags": ["--fp16", "--help", "--level", "--refPair", "--uffInput"],
                                  "values": {"--level": ["high", "low"]}}


def test_an_unknown_build_switch_is_an_error_not_a_guess(tmp_path):
    bindings = BINDINGS.replace("#if ENABLE_INETWORK_SERIALIZE", "#if ENABLE_SOMETHING_NEW")
    with pytest.raises(tool().SurfaceError, match="unknown symbol.*ENABLE_SOMETHING_NEW"):
        tool().build_surface(tool().Source(checkout(tmp_path, bindings), None))


def test_reads_a_git_ref_and_writes_the_json(tmp_path):
    repo = checkout(tmp_path / "TensorRT")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "release/12.4"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "sources"], check=True)
    (repo / "include" / "NvInferVersion.h").unlink()  # the work tree no longer matters: the ref is read
    out = tmp_path / "surfaces"
    result = subprocess.run([sys.executable, str(REPO / "tools" / "trt_surface.py"), "--repo", str(repo),
                             "--ref", "release/12.4", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    surface = json.loads((out / "12.4.json").read_text())
    assert surface["source"]["ref"] == "release/12.4" and len(surface["source"]["commit"]) == 40
    assert "Thing" in surface["python"]["classes"] and "12.4.0.7" in result.stdout


def test_committed_surfaces_are_the_tools_output_and_hold_the_facts_we_rely_on():
    t = tool()
    versions = sorted((p.stem for p in SURFACES.glob("*.json")), key=lambda v: [int(x) for x in v.split(".")])
    assert versions[:3] == ["8.5", "8.6", "10.3"] and versions[-1].startswith("11.")
    facts = {}
    for v in versions:
        text = (SURFACES / f"{v}.json").read_text()
        surface = json.loads(text)
        assert t.dump(surface) == text  # written by the tool, not edited by hand
        assert surface["schema"] == t.SCHEMA and surface["tensorrt"]["version"].startswith(v + ".")
        assert surface["source"]["ref"] == f"release/{v}" and len(surface["source"]["commit"]) == 40
        py = surface["python"]
        facts[v] = {
            "same_cc": "SAME_COMPUTE_CAPABILITY" in py["enums"].get("HardwareCompatibilityLevel", {"members": []})[
                "members"],
            "adjust_dla": "ADJUST_FOR_DLA" in py["enums"].get("OnnxParserFlag", {"members": []})["members"],
            "calibrators": "IInt8EntropyCalibrator2" in py["classes"],
            "fp16_flag": "FP16" in py["enums"]["BuilderFlag"]["members"],
            "trtexec_fp16": "--fp16" in surface["trtexec"]["flags"],
            "trtexec_calib": "--calib" in surface["trtexec"]["flags"],
        }
        assert py["classes"]["IExecutionContext"]["methods"]["execute_async_v3"] == [  # size_t: any __index__
            {"params": [{"name": "stream_handle", "default": False}], "arity": 1, "types": ["int"]}]
        assert py["classes"]["IBuilderConfig"]["methods"]["set_memory_pool_limit"][0]["types"] == [
            "enum MemoryPoolType", "int"]
    for v in ("8.5", "8.6"):  # JetPack 5.1 and 6.0: the I/O tensor API is there, weak typing only
        assert facts[v] == {"same_cc": False, "adjust_dla": False, "calibrators": True, "fp16_flag": True,
                            "trtexec_fp16": True, "trtexec_calib": True}
        assert "set_output_allocator" in json.loads((SURFACES / f"{v}.json").read_text())["python"]["classes"][
            "IExecutionContext"]["methods"]
    assert facts["10.3"] == {"same_cc": False, "adjust_dla": False, "calibrators": True, "fp16_flag": True,
                             "trtexec_fp16": True, "trtexec_calib": True}
    newest10 = max((v for v in versions if v.startswith("10.")), key=lambda v: int(v.split(".")[1]))
    assert facts[newest10] == {"same_cc": True, "adjust_dla": True, "calibrators": True, "fp16_flag": True,
                               "trtexec_fp16": True, "trtexec_calib": True}
    assert "--refPair" in json.loads((SURFACES / "11.1.json").read_text())["trtexec"]["flags"]  # finding 10
    assert facts[versions[-1]] == {"same_cc": True, "adjust_dla": True, "calibrators": False, "fp16_flag": False,
                                   "trtexec_fp16": False, "trtexec_calib": False}
