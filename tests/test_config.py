from pathlib import Path

import pytest

import yaml

from edgedeploy.config import DEFAULT_THRESHOLDS, BuildSpec, effective_thresholds, load_spec
from edgedeploy.errors import UsageError

MINIMAL = {
    "model": {"onnx": "m.onnx"},
    "inputs": [{"name": "x", "shape": ["batch", 3, 8, 8]}],
}


def test_minimal_config_resolves_paths_relative_to_the_file(write_config, tmp_path):
    spec = load_spec(write_config(MINIMAL))
    assert spec.model.onnx == (tmp_path / "m.onnx").resolve()
    assert spec.inputs[0].shape == ["batch", 3, 8, 8]
    budget, origin = effective_thresholds(spec)
    assert budget.max_rel_l2 == DEFAULT_THRESHOLDS["fp32"]["max_rel_l2"] and origin == {"max_rel_l2": "default"}


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


# --------------------------------------------------------------------------------------------- thresholds
CLASSIFIER = {**MINIMAL, "outputs": ["logits"], "validation": {"task": "classification"}}


def test_thresholds_merge_key_by_key_over_the_defaults(write_config):
    """The README's block sets fp32 and fp16 only: int8 keeps its defaults, fp16 keeps its top-1 budget."""
    spec = load_spec(write_config({**CLASSIFIER, "thresholds": {"fp32": {"max_rel_l2": 2e-5},
                                                                "fp16": {"max_rel_l2": 5e-3}}}))
    fp16, origin = effective_thresholds(spec, "fp16")
    assert (fp16.max_rel_l2, fp16.max_top1_drop) == (5e-3, DEFAULT_THRESHOLDS["fp16"]["max_top1_drop"])
    assert origin == {"max_rel_l2": "config", "max_top1_drop": "default"}
    int8, origin = effective_thresholds(spec, "int8")
    assert int8.max_top1_drop == DEFAULT_THRESHOLDS["int8"]["max_top1_drop"] and origin == {"max_top1_drop": "default"}
    assert int8.max_map50_drop is None  # a detection default does not apply to a classifier


def test_a_null_threshold_turns_a_default_off_on_purpose(write_config):
    spec = load_spec(write_config({**CLASSIFIER, "thresholds": {"int8": {"max_top1_drop": None,
                                                                         "min_top1_agreement": 0.97}}}))
    int8, origin = effective_thresholds(spec, "int8")
    assert int8.max_top1_drop is None and int8.min_top1_agreement == 0.97
    assert origin == {"max_top1_drop": "config", "min_top1_agreement": "config"}


def test_given_thresholds_survive_the_manifest_round_trip(write_config):
    spec = load_spec(write_config({**CLASSIFIER, "thresholds": {"fp16": {"max_abs": None, "outputs": {
        "logits": {"min_cosine": 0.999}}}}}))
    dumped = spec.model_dump(mode="json")["thresholds"]
    assert dumped == {"fp16": {"max_abs": None, "outputs": {"logits": {"min_cosine": 0.999}}}}
    again = BuildSpec.model_validate(spec.model_dump(mode="json"))
    assert effective_thresholds(again, "fp16") == effective_thresholds(spec, "fp16")


@pytest.mark.parametrize("thresholds, task, key", [
    ({"fp16": {"max_map50_drop": 0.005}}, "classification", "thresholds.fp16.max_map50_drop"),
    ({"int8": {"max_top1_drop": 0.01}}, "detection", "thresholds.int8.max_top1_drop"),
    ({"fp32": {"min_top1_agreement": 0.99}}, "none", "thresholds.fp32.min_top1_agreement"),
    ({"int8": {"outputs": {"logitz": {"max_abs": 1.0}}}}, "classification", "thresholds.int8.outputs.logitz"),
    ({"fp64": {"max_rel_l2": 1e-5}}, "classification", "thresholds.fp64"),
    ({"fp32": {"max_rel_l2s": 1e-5}}, "classification", "thresholds.fp32.max_rel_l2s"),
])
def test_a_threshold_that_would_check_nothing_is_an_error_naming_it(write_config, thresholds, task, key):
    path = write_config({**CLASSIFIER, "validation": {"task": task}, "thresholds": thresholds})
    with pytest.raises(UsageError) as info:
        load_spec(path)
    assert f"`{key}" in info.value.message and str(path) in info.value.message, info.value.message
    assert "\n" not in info.value.message


def test_the_readme_config_loads_and_keeps_every_default():
    """The config block of README.md, as a user copies it."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = BuildSpec.model_validate(yaml.safe_load(block))
    for precision, defaults in DEFAULT_THRESHOLDS.items():
        budget, origin = effective_thresholds(spec, precision)
        applying = [k for k in defaults if k in origin]
        assert applying, precision
        assert all(getattr(budget, k) is not None for k in applying)
