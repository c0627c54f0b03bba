"""The bad-input matrix: manifest."""

from __future__ import annotations

import pytest

from bad_input.matrix import Run, manifest_run, matrix_test, registry

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)


for _name, _says, _change in (
        ("files is a list", "manifest.json `files`: Input should be a valid dictionary", lambda m: m.update(files=[1])),
        ("artifact is a string", "manifest.json `artifact`: Input should be a valid dictionary",
         lambda m: m.update(artifact="x")),
        ("artifact path escapes the folder", "'../../conv.onnx' is not a path inside the artifact folder",
         lambda m: m["artifact"].update(path="../../conv.onnx")),
        ("a file at an absolute path", "'/etc/passwd' is not a path inside the artifact folder",
         lambda m: m["files"].update({"/etc/passwd": "0" * 64})),
        ("artifact without path", "manifest.json `artifact.path`: Field required", lambda m: m["artifact"].pop("path")),
        ("spec is a list", "manifest.json `spec`: Input should be a valid dictionary", lambda m: m.update(spec=[])),
        ("a hash that is not sha256", "String should match pattern",
         lambda m: m["files"].update({"deploy.onnx": "md5:abc"}))):
    @case(f"manifest: {_name}", 2, _says, "rebuild it", existing=True)
    def _(bench, here, out, change=_change):
        return manifest_run(here, out, change)


@case("manifest is a JSON list", 2, "manifest.json holds no build spec", existing=True)
def _(bench, here, out):
    (out / "manifest.json").write_text("[]")
    return Run(["validate", str(out)], (str(out / "manifest.json"),), keep=(here / "out-validate",))


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
