"""Property tests for the config loader: whatever the file holds — the demo spec with fields mutated, deleted, added
or aliased, YAML tricks (duplicate keys, anchors, alias bombs, deep nesting, a list or a scalar), truncated text,
stray or non-UTF-8 bytes, plain garbage — `load_spec` returns a BuildSpec or raises one UsageError whose message is
one line naming the file; and every spec it accepts survives dump → load unchanged (the manifest records it dumped).

EDGEDEPLOY_CONFIG_EXAMPLES=2000 for a longer hunt; the default keeps the suite fast."""

from __future__ import annotations

import copy
import os
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edgedeploy.config import _MAX_NODES, BuildSpec, demo_spec_path, load_spec
from edgedeploy.errors import UsageError

PROPS = settings(max_examples=int(os.environ.get("EDGEDEPLOY_CONFIG_EXAMPLES", "100")), deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DEMO = yaml.safe_load(demo_spec_path().read_text())  # as written: relative paths, defaults left out
FULL = load_spec(demo_spec_path()).model_dump(mode="json")  # every field, as the manifest records it


def _keys(doc) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in _keys(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in _keys(v)}
    return set()


KNOWN_KEYS = sorted(_keys(FULL))
PLAUSIBLE = ["fp32", "fp16", "int8", "openvino", "onnxruntime", "trt", "auto", "none", "detection", "NCHW", "BGR",
             "letterbox", "batch", "a.b:c", "nocolon", "", "(", "[0-9]+", "x.onnx", "/abs/w.pt", "~/w.pt", "yes",
             "0", "-1", "1e-5", ".inf", "null", "2001-12-14", "a\nb", "\x85", "ünï"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 20), st.integers(), st.floats(),
                    st.floats(allow_nan=False, allow_infinity=False, width=32), st.text(max_size=12),
                    st.sampled_from(PLAUSIBLE))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.sampled_from(KNOWN_KEYS) | st.text(max_size=8) | st.integers(), inner, max_size=4), max_leaves=12)


def _paths(doc, prefix=(), seen=frozenset()) -> list[tuple]:
    """Every location in the document: dict keys and list indices, depth first (an alias cycle is entered once)."""
    out = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for k, v in items:
        out.append(prefix + (k,))
        if id(v) not in seen:
            out += _paths(v, prefix + (k,), seen | {id(doc)})
    return out


def _parent(doc, path):
    for k in path[:-1]:
        doc = doc[k]
    return doc


@st.composite
def near_valid(draw) -> dict | list:
    """The demo spec (as written, or with every field spelt out) after 0-3 mutations: a field set to another value
    (often a plausible one of the wrong kind), deleted, an unknown or misplaced key added, or one part aliased to
    another (yaml.safe_dump then writes an anchor and an alias)."""
    doc = copy.deepcopy(draw(st.sampled_from([DEMO, FULL]), label="base"))
    for _ in range(draw(st.integers(0, 3), label="mutations")):
        paths = _paths(doc)
        if not paths:
            break
        path = draw(st.sampled_from(paths), label="at")
        parent, key = _parent(doc, path), path[-1]
        op = draw(st.sampled_from(["set", "delete", "add", "alias"]), label="op")
        if op == "set":
            parent[key] = draw(values, label="value")
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KNOWN_KEYS) | st.text(max_size=8), label="key")] = draw(values, label="value")
        elif op == "alias":
            other = _parent(doc, draw(st.sampled_from(paths), label="to"))
            if other is not parent and isinstance(other, (dict, list)):
                parent[key] = other
    return doc


def _alias_bomb(width: int, depth: int) -> str:
    """kwargs (which take any JSON value) holding `width`**`depth` values through nested aliases."""
    lines = ["model:", "  factory: m:f", "  kwargs:", f"    l0: &l0 [{', '.join(['x'] * width)}]"]
    lines += [f"    l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
    return "\n".join(lines + ["inputs: [{name: x, shape: [1]}]", ""])


@st.composite
def yaml_files(draw) -> bytes:
    """Bytes of a config file: a dumped near-valid spec, maybe damaged as text, or YAML tricks, or garbage."""
    kind = draw(st.sampled_from(["near_valid", "damaged", "duplicate", "bomb", "deep", "other_root", "garbage"]))
    if kind in ("near_valid", "damaged", "duplicate"):
        text = yaml.safe_dump(draw(near_valid()), sort_keys=False)
        if kind == "duplicate":  # a top-level key given again (YAML itself would keep the last silently)
            key = draw(st.sampled_from(sorted(DEMO)))
            text += yaml.safe_dump({key: draw(values)})
        data = text.encode()
        if kind == "damaged":
            at = draw(st.integers(0, len(data)))
            if draw(st.booleans()):
                return data[:at]  # truncated
            return data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]  # stray bytes, maybe not UTF-8
        return data
    if kind == "bomb":  # small enough to load, or past the limit (round-tripping 10**5 values takes seconds)
        width, depth = draw(st.integers(2, 12)), draw(st.integers(1, 8))
        assume(width**depth <= 1000 or width**depth > _MAX_NODES)
        return _alias_bomb(width, depth).encode()
    if kind == "deep":  # loads, or is refused as too deep
        depth = draw(st.sampled_from([1, 30, 200, 400]))
        nested = "[" * depth + "]" * depth
        return f"model: {{factory: 'm:f', kwargs: {{k: {nested}}}}}\ninputs: [{{name: x, shape: [1]}}]\n".encode()
    if kind == "other_root":
        return yaml.safe_dump(draw(st.one_of(scalars, st.lists(values, max_size=3)))).encode()
    return draw(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))


def load_or_refuse(data: bytes) -> BuildSpec | None:
    """The property: a BuildSpec that round-trips, or one UsageError line naming the file; nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_bytes(data)
        try:
            spec = load_spec(path)
        except UsageError as e:
            assert "\n" not in e.message, e.message
            assert str(path) in e.message, e.message
            return None
        path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
        assert load_spec(path) == spec
        return spec


@pytest.mark.slow  # over 10 s on 2 cores in the quick suite
@PROPS
@given(doc=near_valid())
def test_near_valid_specs_load_or_give_one_clear_error(doc):
    load_or_refuse(yaml.safe_dump(doc, sort_keys=False).encode())


@PROPS
@given(data=yaml_files())
def test_any_file_loads_or_gives_one_clear_error(data):
    load_or_refuse(data)


def test_the_unmutated_bases_load_and_round_trip():
    for doc in (DEMO, FULL):
        assert load_or_refuse(yaml.safe_dump(doc).encode()) is not None


GOOD = "model: {factory: 'm:f'}\ninputs: [{name: x, shape: [batch, 3]}]\n"


@pytest.mark.parametrize("text, expected", [
    # each a bug the properties found: before the fix, a crash (first three), a silent acceptance that failed later
    # or never (the rest), or a message spread over two lines (the last)
    ("model: {factory: 'm:f', kwargs: {k: " + "[" * 1000 + "]" * 1000 + "}}\n", "nested too deeply"),
    ('model: {onnx: "a\\0b"}\ninputs: [{name: x, shape: [1]}]\n', "`model.onnx`: Value error, a path cannot contain"),
    ("model: {factory: 'm:f', kwargs: &k {a: *k}}\ninputs: [{name: x, shape: [1]}]\n", "refers to itself"),
    (_alias_bomb(10, 8), "expands to over"),
    ("model: {factory: 'm:f', kwargs: {k: !!binary /w==}}\ninputs: [{name: x, shape: [1]}]\n", "model.kwargs.k"),
    ("model: {factory: 'm:f', kwargs: {1: 2}}\ninputs: [{name: x, shape: [1]}]\n", "model.kwargs.1"),
    (GOOD + "target: trt\ntarget: onnxruntime\n", ":4:1: invalid YAML: duplicate key 'target'"),
    (GOOD + "thresholds: {fp32: {max_rel_l2: .nan}}\n", "`thresholds.fp32.max_rel_l2`: Input should be a finite"),
    ("model: {onnx: m.onnx}\ninputs: [{name: x, shape: [true, 3]}]\n", "`inputs.0.shape.0"),
    (GOOD + "fp16: {keep_fp32_nodes: ['conv[']}\n", "'conv[' is not a regular expression"),
    (GOOD + '"a\\nb": 1\n', "unknown key `a\\nb`"),
])
def test_bugs_found_give_one_clear_error(write_config, text, expected):
    path = write_config(text)
    with pytest.raises(UsageError) as e:
        load_spec(path)
    assert expected in e.value.message and str(path) in e.value.message and "\n" not in e.value.message


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="Path.resolve() stopped raising on symlink loops in 3.13")
def test_a_symlink_loop_in_a_path_is_a_usage_error(write_config, tmp_path):
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(UsageError, match="cannot resolve a path"):
        load_spec(write_config("model: {onnx: loop/m.onnx}\ninputs: [{name: x, shape: [1]}]\n"))


def test_anchors_and_merge_keys_still_work(write_config):
    text = GOOD + "thresholds:\n  fp32: &t {max_rel_l2: 1.0e-4}\n  fp16: {<<: *t, max_abs: 1}\n"
    spec = load_spec(write_config(text))
    assert spec.thresholds["fp16"].max_rel_l2 == 1e-4 and spec.thresholds["fp16"].max_abs == 1


def test_a_validate_config_is_read_by_the_same_loader(write_config, demo_spec):
    """`edgedeploy validate --config` overlays thresholds from a YAML file: the same refusals, not a traceback."""
    from edgedeploy.validate.gate import apply_config

    for data, expected in [(b"thresholds: {}\nthresholds: {}\n", "duplicate key"), (b"\xff\xfe", "cannot read"),
                           (b"regression: " + b"[" * 1000 + b"]" * 1000, "nested too deeply")]:
        path = write_config("")
        path.write_bytes(data)
        with pytest.raises(UsageError, match=expected) as e:
            apply_config(demo_spec, path)
        assert str(path) in e.value.message
