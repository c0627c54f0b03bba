"""Safe checkpoint loading and the exporter's two modes."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgedeploy import export
from edgedeploy.config import demo_spec_path, import_callable, load_spec
from edgedeploy.errors import EdgeDeployError, UsageError


class _Planted:
    """A pickle payload that would create a file if unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"model": _Planted(marker)}, ckpt)
    with pytest.raises(EdgeDeployError) as info:
        export.load_checkpoint(ckpt, trust_code=False)
    assert info.value.exit_code == 2
    assert "--trust-code" in info.value.message and str(ckpt) in info.value.message
    assert not marker.exists()


def test_missing_checkpoint_and_bad_factory(tmp_path):
    with pytest.raises(UsageError, match="checkpoint not found"):
        export.load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(UsageError, match="cannot import module"):
        import_callable("no_such_module_xyz:f", "model.factory")
    with pytest.raises(UsageError, match="has no function"):
        import_callable("edgedeploy.demo.model:no_such_factory", "model.factory")


def test_checkpoint_that_does_not_match_the_model(tmp_path):
    ckpt = tmp_path / "other.pt"
    torch.save({"weight": torch.zeros(3)}, ckpt)
    spec = load_spec(demo_spec_path())
    spec = spec.model_copy(update={"model": spec.model.model_copy(update={"checkpoint": ckpt})})
    with pytest.raises(EdgeDeployError, match="does not match the model"):
        export.build_module(spec)


def test_corrupt_and_truncated_checkpoints(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    torch.save({"w": torch.zeros(4)}, tmp_path / "good.pt")
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    for name in ("garbage.pt", "cut.pt"):
        with pytest.raises(EdgeDeployError, match="corrupt, truncated") as info:
            export.load_checkpoint(tmp_path / name)
        assert name in info.value.message


@pytest.mark.slow
@pytest.mark.parametrize("exporter_optimize", [True, False])
def test_exporter_modes(tmp_path, exporter_optimize):
    """The exporter folds BN into a conv before it; BN with no conv before it (RepConv's identity branch) stays."""
    spec = load_spec(demo_spec_path())
    spec = spec.model_copy(update={"export": spec.export.model_copy(update={"exporter_optimize": exporter_optimize})})
    module = export.build_module(spec)
    path = export.export_onnx(spec, module, tmp_path / "raw.onnx")
    model = onnx.load(str(path))
    bn_nodes = [n.op_type for n in model.graph.node].count("BatchNormalization")
    bn_modules = sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())
    identity_bns = sum(getattr(m, "rbr_identity", None) is not None for m in module.modules())
    assert identity_bns >= 1
    assert bn_nodes == (identity_bns if exporter_optimize else bn_modules)
    assert [i.name for i in model.graph.input] == ["images"]
    batch = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value  # dynamic batch
    assert [p.name for p in tmp_path.iterdir()] == ["raw.onnx"]  # one file, no temp leftovers
    # no node carries the exporter's stack traces: they name this checkout's files
    assert str(Path(export.__file__).parent) not in path.read_text(errors="replace")


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_export_bytes_do_not_depend_on_where_the_code_lives(tmp_path):
    """The same model exported from two copies of the package gives the same raw.onnx, byte for byte (calibration
    results and the stage cache are keyed on its hash; a shipped model must not name the workstation's paths)."""
    import edgedeploy

    copy = tmp_path / "elsewhere"
    shutil.copytree(Path(edgedeploy.__file__).parent, copy / "edgedeploy",
                    ignore=shutil.ignore_patterns("__pycache__"))
    script = ("import sys, torch; from pathlib import Path; from edgedeploy import export; "
              "from edgedeploy.config import demo_spec_path, load_spec; torch.manual_seed(0); "
              "spec = load_spec(demo_spec_path()); "
              "export.export_onnx(spec, export.build_module(spec), Path(sys.argv[1]))")
    hashes = []
    for root, name in [(copy, "a.onnx"), (Path(edgedeploy.__file__).parent.parent, "b.onnx")]:
        run = subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], capture_output=True, text=True,
                             cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
        assert run.returncode == 0, run.stderr
        hashes.append(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
    assert hashes[0] == hashes[1]


# ------------------------------------------------------------------------------------------------ own models


class _Named(torch.nn.Module):
    """forward()'s argument is `x`, the config calls the input `images`: torch.export keys by the Python name."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)).mean((2, 3))


def _own_spec(tmp_path, inputs):
    from edgedeploy.config import BuildSpec

    return BuildSpec.model_validate({"name": "own", "model": {"factory": "x:y"}, "inputs": inputs,
                                     "outputs": ["logits"]})


def test_config_inputs_map_to_forward_arguments_by_position(tmp_path):
    spec = _own_spec(tmp_path, [{"name": "images", "shape": ["batch", 3, 16, 16]}])
    path = export.export_onnx(spec, _Named().eval(), tmp_path / "raw.onnx")
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["images"]  # the deployed graph keeps the config's name
    assert [o.name for o in model.graph.output] == ["logits"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # the batch stays dynamic


def test_input_count_that_cannot_match_forward_is_one_clear_error(tmp_path):
    spec = _own_spec(tmp_path, [{"name": "images", "shape": ["batch", 3, 16, 16]},
                                {"name": "extra", "shape": ["batch", 4]}])
    with pytest.raises(UsageError, match=r"config lists 2 input\(s\) but _Named.forward takes 1 \(x\)") as info:
        export.export_onnx(spec, _Named().eval(), tmp_path / "raw.onnx")
    assert "in the same order" in info.value.message
    assert not (tmp_path / "raw.onnx").exists()


class _DataDependent(torch.nn.Module):
    def forward(self, x):
        if x.sum() > 0:  # data-dependent control flow: torch.export refuses it
            return x * 2
        return x


def test_a_failed_export_names_its_cause_and_log_without_colour_codes(tmp_path):
    spec = _own_spec(tmp_path, [{"name": "images", "shape": ["batch", 4]}])
    with pytest.raises(EdgeDeployError) as info:
        export.export_onnx(spec, _DataDependent(), tmp_path / "raw.onnx")
    message = info.value.message
    assert "\x1b" not in message and "torch.export cannot trace the model" in message
    # the root cause in the model's own code, not torch's generic first line
    assert "test_export.py:" in message and "in forward" in message and "DataDependent" in message, message
    log = Path(message.split("the exporter's log is in ")[1].split(" ")[0])
    assert log == tmp_path / "export-error.log"  # beside the output, not in the system temp folder
    assert log.is_file() and "Traceback" in log.read_text() and "\x1b" not in log.read_text()
    assert info.value.log == log.read_text()
    assert list(tmp_path.iterdir()) == [log]  # nothing half-written


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
def test_readme_own_model_spec_builds_a_forward_x_model(tmp_path, monkeypatch):
    """The README's 'Your own model' YAML, unchanged, with a model whose forward() argument is `x`."""
    from edgedeploy import pipeline

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Your own model", 1)[1]
    yaml_text = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    (tmp_path / "mynet.yaml").write_text(yaml_text)
    package = tmp_path / "mypackage"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(
        "import torch\n\n\n"
        "class MyNet(torch.nn.Module):\n"
        "    def __init__(self, num_classes):\n"
        "        super().__init__()\n"
        "        self.conv = torch.nn.Conv2d(3, 8, 3, stride=4, padding=1, bias=False)\n"
        "        self.bn = torch.nn.BatchNorm2d(8)\n"
        "        self.fc = torch.nn.Linear(8, num_classes)\n\n"
        "    def forward(self, x):\n"
        "        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))\n\n\n"
        "def build_mynet(num_classes):\n"
        "    return MyNet(num_classes)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = load_spec(tmp_path / "mynet.yaml")
    build_mynet = import_callable(spec.model.factory, "model.factory")

    (tmp_path / "weights").mkdir()
    torch.manual_seed(0)
    torch.save(build_mynet(**spec.model.kwargs).state_dict(), tmp_path / "weights" / "mynet.pt")
    images = np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)
    np.savez(tmp_path / "val.npz", images=images)
    latency = spec.validation.latency.model_copy(update={"batch_sizes": [1], "warmup": 1, "iterations": 2,
                                                         "async_requests": 0})
    spec = spec.model_copy(update={"target": "onnxruntime", "precision": "fp32",
                                   "validation": spec.validation.model_copy(update={"latency": latency})})
    report = pipeline.build(spec, tmp_path / "out")
    assert report["passed"], [c for c in report["checks"] if not c["passed"]]
    deployed = onnx.load(str(tmp_path / "out" / "deploy.onnx"))
    assert [i.name for i in deployed.graph.input] == ["images"]
