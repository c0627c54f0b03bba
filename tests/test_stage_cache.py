"""The stage cache (edgedeploy.stagecache): export and optimize results reused by content across output folders.

Every key field gets a test that changing it alone makes the stage re-run, naming that field (the material-level
tests: one stored entry, one changed field, `rebuilt` with exactly that field). End to end on a tiny PyTorch
project written to tmp_path: a rebuild with another target and precision reuses export and optimize; editing a module
the factory imports re-runs the export; a damaged entry is refused and re-made; `--trust-code` and `--no-cache` never
use the cache; `edgedeploy cache ls|clear` list and delete entries."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgedeploy import pipeline, stagecache
from edgedeploy.config import load_spec
from edgedeploy.stagecache import StageCache, export_material, factory_code, optimize_material

from cli_helpers import run_cli

torch = pytest.importorskip("torch")

MODEL = '''
import torch
from torch import nn

from tinynet.blocks import Block


class Tiny(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), Block(width),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 5))

    def forward(self, x):
        return self.body(x)


def build(width: int = 4):
    torch.manual_seed(0)
    return Tiny(width).eval()
'''
BLOCKS = '''
from torch import nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return x + self.conv(x).relu()
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A tiny importable model package, its checkpoint, validation inputs and a build spec."""
    pkg = tmp_path / "src" / "tinynet"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(textwrap.dedent(MODEL))
    (pkg / "blocks.py").write_text(textwrap.dedent(BLOCKS))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    import importlib
    import sys

    for name in [m for m in sys.modules if m == "tinynet" or m.startswith("tinynet.")]:
        monkeypatch.delitem(sys.modules, name)  # each test imports its own copy of the package
    importlib.invalidate_caches()
    from tinynet.model import build

    torch.save(build().state_dict(), tmp_path / "weights.pt")
    for name in [m for m in sys.modules if m == "tinynet" or m.startswith("tinynet.")]:
        del sys.modules[name]  # as in a new process: the build imports the package itself
    np.savez(tmp_path / "val.npz", x=np.random.default_rng(0).random((6, 3, 16, 16), dtype=np.float32))
    config = {"name": "tiny", "model": {"factory": "tinynet.model:build", "kwargs": {"width": 4},
                                       "checkpoint": "weights.pt"},
              "inputs": [{"name": "x", "shape": ["batch", 3, 16, 16]}], "outputs": ["logits"],
              "validation": {"data": "val.npz", "layer_error_samples": 0,
                             "latency": {"batch_sizes": [1], "warmup": 1, "iterations": 3, "async_requests": 0}}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "src"))  # for the CLI in a subprocess
    return tmp_path


def spec_of(project: Path, **updates):
    return load_spec(project / "tiny.yaml").model_copy(update=updates)


# ------------------------------------------------------------------------------------------- every key field
def _changed(cache: StageCache, stage: str, before: dict, after: dict) -> list[str]:
    """Store an entry for `before`; the lookup for `after` must be a miss that names the changed fields."""
    entry = cache.lookup(stage, before)
    result = cache.root / "result"
    result.write_bytes(b"made from before")
    cache.store(entry, [result])  # written and sealed as a build stores it
    assert cache.lookup(stage, before).status == "reused"
    again = cache.lookup(stage, after)
    assert again.status == "rebuilt" and not again.reused
    return again.stale["changed"]


def _edit(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


EXPORT_CHANGES = {
    # field named in the report: what changes it
    "source.kwargs.width": lambda p, s: (s.model_copy(update={"model": s.model.model_copy(update={"kwargs": {"width": 6}})}), None),
    "source.checkpoint_sha256": lambda p, s: (s, torch.save({"other": torch.zeros(1)}, p / "weights.pt")),
    "source.factory": lambda p, s: (s.model_copy(update={"model": s.model.model_copy(update={"factory": "tinynet.model:other"})}),
                                    (p / "src/tinynet/model.py").write_text((p / "src/tinynet/model.py").read_text()
                                                                           + "\nother = build\n")),
    "source.factory_code.sha256": lambda p, s: (s, _edit(p / "src/tinynet/model.py", "manual_seed(0)", "manual_seed(1)")),
    "spec.inputs": lambda p, s: (s.model_copy(update={"inputs": [s.inputs[0].model_copy(update={"shape": ["batch", 3, 32, 32]})]}), None),
    "spec.outputs": lambda p, s: (s.model_copy(update={"outputs": ["scores"]}), None),
    "spec.export.exporter_optimize": lambda p, s: (s.model_copy(update={"export": s.export.model_copy(update={"exporter_optimize": False})}), None),
    "spec.export.opset": lambda p, s: (s.model_copy(update={"export": s.export.model_copy(update={"opset": 19})}), None),
}


@pytest.mark.parametrize("field", sorted(EXPORT_CHANGES))
def test_each_export_key_field_changes_the_key(project, field):
    cache = StageCache()
    spec = spec_of(project)
    before = export_material(spec, "data-a", trust_code=False)[0]
    changed_spec, _ = EXPORT_CHANGES[field](project, spec)
    after = export_material(changed_spec, "data-a", trust_code=False)[0]
    changed = _changed(cache, "export", before, after)
    if field == "source.factory":  # the factory's module changed too (it gained `other`)
        assert set(changed) == {"source.factory", "source.factory_code.sha256"}
    else:
        assert changed == [field]


def test_a_module_the_factory_imports_is_in_the_key(project):
    cache = StageCache()
    spec = spec_of(project)
    before = export_material(spec, "data-a", trust_code=False)[0]
    _edit(project / "src/tinynet/blocks.py", "padding=1)", "padding=1, bias=False)")
    assert _changed(cache, "export", before, export_material(spec, "data-a", trust_code=False)[0]) == \
        ["source.factory_code.sha256"]
    code = factory_code("tinynet.model:build")
    assert {"tinynet.model", "tinynet.blocks", "tinynet"} <= set(code["modules"])
    assert set(code["installed"]) == {"torch"}  # an installed package counts by its version, not its source


def test_validation_data_library_versions_and_edgedeploy_code_are_in_the_export_key(project, monkeypatch):
    cache = StageCache()
    spec = spec_of(project)
    before = export_material(spec, "data-a", trust_code=False)[0]
    assert _changed(cache, "export", before, export_material(spec, "data-b", trust_code=False)[0]) == ["validation_sha256"]
    versions = stagecache._versions
    monkeypatch.setattr(stagecache, "_versions", lambda names: {**versions(names), "torch": "9.9"})
    assert _changed(StageCache(project / "c2"), "export", before, export_material(spec, "data-a", False)[0]) == \
        ["libraries.torch"]
    monkeypatch.setattr(stagecache, "_versions", versions)
    monkeypatch.setattr(stagecache, "edgedeploy_code", lambda: {"version": "0.1.0", "code_sha256": "edited"})
    assert _changed(StageCache(project / "c3"), "export", before, export_material(spec, "data-a", False)[0]) == \
        ["edgedeploy.code_sha256"]


def test_an_installed_package_counts_by_its_version(project, monkeypatch):
    before = export_material(spec_of(project), "data-a", trust_code=False)[0]
    monkeypatch.setattr(stagecache, "_distribution_version", lambda top: f"{top} 0.0-other")
    after = export_material(spec_of(project), "data-a", trust_code=False)[0]
    assert _changed(StageCache(), "export", before, after) == ["source.factory_code.installed.torch"]


def test_onnx_source_and_its_external_data_are_in_the_key(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 4), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.weights",
              size_threshold=0)
    spec = load_spec_for_onnx(tmp_path)
    before = export_material(spec, "data-a", trust_code=False)[0]
    assert set(before["source"]["external_data"]) == {"m.weights"}
    data = bytearray((tmp_path / "m.weights").read_bytes())
    data[0] ^= 1
    (tmp_path / "m.weights").write_bytes(bytes(data))
    after = export_material(spec, "data-a", trust_code=False)[0]
    assert _changed(StageCache(tmp_path / "c"), "export", before, after) == ["source.external_data.m.weights"]
    model.graph.node[0].name = "renamed"
    onnx.save(model, str(tmp_path / "m.onnx"), save_as_external_data=True, location="m.weights", size_threshold=0)
    assert "source.sha256" in _changed(StageCache(tmp_path / "d"), "export", after,
                                       export_material(spec, "data-a", trust_code=False)[0])


def load_spec_for_onnx(folder: Path):
    (folder / "m.yaml").write_text(yaml.safe_dump({"model": {"onnx": "m.onnx"},
                                                   "inputs": [{"name": "x", "shape": ["batch", 4]}]}))
    return load_spec(folder / "m.yaml")


OPTIMIZE_BASE = {"raw": "r" * 64, "settings": {"keep_outputs": [], "drop_outputs": [], "simplifier": "auto"},
                 "verify": "v" * 64}
OPTIMIZE_CHANGES = {
    "raw_sha256": {"raw": "s" * 64},
    "settings.drop_outputs": {"settings": {**OPTIMIZE_BASE["settings"], "drop_outputs": ["aux*"]}},
    "settings.simplifier": {"settings": {**OPTIMIZE_BASE["settings"], "simplifier": "onnxslim"}},
    "verify_inputs_sha256": {"verify": "w" * 64},
}


@pytest.mark.parametrize("field", sorted(OPTIMIZE_CHANGES))
def test_each_optimize_key_field_changes_the_key(tmp_path, field):
    def material(raw, settings, verify):
        return optimize_material(raw, settings, verify)

    before = material(**OPTIMIZE_BASE)
    after = material(**{**OPTIMIZE_BASE, **OPTIMIZE_CHANGES[field]})
    assert _changed(StageCache(tmp_path), "optimize", before, after) == [field]


def test_optimize_key_holds_library_versions_and_edgedeploy_code(tmp_path, monkeypatch):
    before = optimize_material("r" * 64, OPTIMIZE_BASE["settings"], "v" * 64)
    versions = stagecache._versions
    monkeypatch.setattr(stagecache, "_versions", lambda names: {**versions(names), "onnxsim": "0.0"})
    after = optimize_material("r" * 64, OPTIMIZE_BASE["settings"], "v" * 64)
    assert _changed(StageCache(tmp_path), "optimize", before, after) == ["libraries.onnxsim"]
    monkeypatch.setattr(stagecache, "_versions", versions)
    monkeypatch.setattr(stagecache, "edgedeploy_code", lambda: {"version": "0.1.0", "code_sha256": "edited"})
    after = optimize_material("r" * 64, OPTIMIZE_BASE["settings"], "v" * 64)
    assert _changed(StageCache(tmp_path / "b"), "optimize", before, after) == ["edgedeploy.code_sha256"]


def test_trust_code_and_modules_imported_before_the_build_are_never_cached(project):
    material, note = export_material(spec_of(project), "data-a", trust_code=True)
    assert material is None and note.startswith("--trust-code")
    import tinynet.model  # noqa: F401 - the caller imports the factory's module itself, then edits its file:
    material, note = export_material(spec_of(project), "data-a", trust_code=False)
    assert material is None and "tinynet" in note and "imported before this build" in note


# ------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_rebuild_with_another_target_and_precision_reuses_export_and_optimize(project):
    first = pipeline.build(spec_of(project, target="onnxruntime"), project / "a", cache=StageCache())
    assert {k: v["status"] for k, v in first["stage_cache"].items()} == {"export": "new", "optimize": "new"}
    second = pipeline.build(spec_of(project, target="openvino", precision="fp16"), project / "b", cache=StageCache())
    assert {k: v["status"] for k, v in second["stage_cache"].items()} == {"export": "reused", "optimize": "reused"}
    assert second["passed"], second["checks"]
    for name in ("raw.onnx", "reference.npz", "deploy.onnx"):
        assert (project / "a" / name).read_bytes() == (project / "b" / name).read_bytes(), name
    assert json.loads((project / "b" / "optimize.json").read_text())["output_path"] == "deploy.onnx"  # its own, relative
    assert "| export |" in (project / "b" / "report.md").read_text() and "reused" in (project / "b" / "report.md").read_text()

    # an edit to a module the factory imports re-runs the export (and so the optimize of its new raw.onnx)
    _edit(project / "src/tinynet/blocks.py", "x + self.conv(x).relu()", "x + 2 * self.conv(x).relu()")
    import sys

    for name in [m for m in sys.modules if m.startswith("tinynet")]:
        del sys.modules[name]  # a new process (the CLI): the build imports the edited file
    third = pipeline.build(spec_of(project, target="onnxruntime"), project / "c", cache=StageCache())
    export = third["stage_cache"]["export"]
    assert export["status"] == "rebuilt" and export["stale"]["changed"] == ["source.factory_code.sha256"]
    assert third["stage_cache"]["optimize"].get("stale", {}).get("changed") == ["raw_sha256"], third["stage_cache"]
    assert (project / "c" / "raw.onnx").read_bytes() != (project / "a" / "raw.onnx").read_bytes()


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_a_damaged_entry_is_refused_and_remade(project):
    pipeline.build(spec_of(project, target="onnxruntime"), project / "a", cache=StageCache())
    entry = next(p for p in (project / "xdg" / "edgedeploy" / "stages" / "export").iterdir())
    raw = entry / "raw.onnx"
    raw.write_bytes(raw.read_bytes()[:-10])
    report = pipeline.build(spec_of(project, target="onnxruntime"), project / "b", cache=StageCache())
    assert report["stage_cache"]["export"]["status"] == "refused"
    assert "raw.onnx: content hash mismatch" in report["stage_cache"]["export"]["note"]
    assert report["passed"]
    again = pipeline.build(spec_of(project, target="onnxruntime"), project / "c", cache=StageCache())
    assert again["stage_cache"]["export"]["status"] == "reused"


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_no_cache_and_the_cache_commands(project):
    env_cache = project / "xdg" / "edgedeploy"
    result = run_cli("build", str(project / "tiny.yaml"), "--target", "onnxruntime", "--no-cache", "--out",
                     str(project / "a"), cwd=project)
    assert result.returncode == 0, result.stderr
    report = json.loads((project / "a" / "report.json").read_text())
    assert report["stage_cache"]["export"] == {"status": "off", "note": "--no-cache"}
    assert not (env_cache / "stages").exists()
    result = run_cli("build", str(project / "tiny.yaml"), "--target", "onnxruntime", "--out", str(project / "b"),
                     cwd=project)
    assert result.returncode == 0, result.stderr
    listed = run_cli("cache", "ls", cwd=project)
    assert listed.returncode == 0 and "2 entries" in listed.stdout and "tinynet.model:build" in listed.stdout
    cleared = run_cli("cache", "clear", "--stage", "export", cwd=project)
    assert cleared.returncode == 0 and "removed 1 entries" in cleared.stdout
    assert "1 entries" in run_cli("cache", "ls", cwd=project).stdout
