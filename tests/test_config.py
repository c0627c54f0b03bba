from pathlib import Path

import pytest

from edgedeploy.config import load_spec
from edgedeploy.errors import UsageError

MINIMAL = {
    "model": {"onnx": "m.onnx"},
    "inputs": [{"name": "x", "shape": ["batch", 3, 8, 8]}],
}


def test_minimal_config_resolves_paths_relative_to_the_file(write_config, tmp_path):
    spec = load_spec(write_config(MINIMAL))
    assert spec.model.onnx == (tmp_path / "m.onnx").resolve()
    assert spec.inputs[0].shape == ["batch", 3, 8, 8]
    assert spec.thresholds["fp32"].max_rel_l2 == 1e-5


def test_demo_config_loads(demo_spec):
    assert demo_spec.model.factory == "edgedeploy.demo.model:build_demo"
    assert Path(demo_spec.model.checkpoint).is_file()
    assert Path(demo_spec.validation.data).is_file()


@pytest.mark.parametrize(
    "data, expected",
    [
        ({**MINIMAL, "taregt": "openvino"}, "unknown key `taregt`"),
        ({**MINIMAL, "model": {"onnx": "m.onnx", "factory": "a:b"}}, "exactly one of model.factory"),
        ({**MINIMAL, "model": {"factory": "nocolon"}}, "package.module:function"),
        ({**MINIMAL, "inputs": [{"name": "x", "shape": [0, 3]}]}, "static dimensions must be positive"),
        ({**MINIMAL, "inputs": [{"name": "x", "shape": [1], "dtype": "float7"}]}, "inputs.0.dtype"),
        ({**MINIMAL, "target": "tpu"}, "`target`"),
        ({**MINIMAL, "inputs": []}, "`inputs`"),
        ("model: [unclosed", "invalid YAML"),
        ("- just\n- a list\n", "YAML mapping"),
    ],
)
def test_bad_configs_give_one_clear_error(write_config, data, expected):
    path = write_config(data)
    with pytest.raises(UsageError) as info:
        load_spec(path)
    assert expected in info.value.message
    assert str(path) in info.value.message
    assert "\n" not in info.value.message


def test_missing_config_names_the_file(tmp_path):
    with pytest.raises(UsageError, match="config file not found"):
        load_spec(tmp_path / "nope.yaml")
