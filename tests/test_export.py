"""Safe checkpoint loading and the exporter's two modes."""

from __future__ import annotations

import os
from pathlib import Path

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
