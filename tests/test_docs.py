"""Issue 24 (7): the documentation a user needs ships with the package and says what the first own-model build needs.
`edgedeploy docs` prints the README and the guides from an installed wheel (edgedeploy/guide links them), help texts
point there instead of to files a wheel user does not have, and README's own-model section names the importable
factory, the calibration block, the latency default and how a baseline is made."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cli_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _own_model_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text[text.index("## Your own model"):text.index("## The output folder")]


def test_every_guide_is_linked_into_the_package():
    shipped = {p.name for p in (ROOT / "edgedeploy" / "guide").glob("*.md")}
    assert {p.name for p in (ROOT / "docs").glob("*.md")} | {"README.md", "calibration.md"} <= shipped
    for p in (ROOT / "edgedeploy" / "guide").glob("*.md"):
        assert p.read_text() == p.resolve().read_text() and p.stat().st_size > 0


def test_docs_command_prints_the_readme_and_help_points_to_it(tmp_path):
    listed = run_cli("docs", cwd=tmp_path)
    assert listed.returncode == 0 and re.search(r"^readme\s+\S+README\.md$", listed.stdout, re.M), listed.stderr
    readme = run_cli("docs", "readme", cwd=tmp_path)
    assert readme.returncode == 0 and "## Your own model" in readme.stdout
    unknown = run_cli("docs", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "no documentation topic 'nope'" in unknown.stderr
    help_text = run_cli("build", "--help", cwd=tmp_path).stdout
    assert "edgedeploy docs readme" in help_text and "README.md" not in help_text


def test_own_model_section_has_what_a_first_build_needs():
    section = _own_model_section()
    assert "importable" in section and "PYTHONPATH" in section  # a factory module beside the YAML is not found
    yaml_block = section[section.index("```yaml"):section.index("```", section.index("```yaml") + 3)]
    assert "\ncalibration:" in yaml_block and "iterations:" not in yaml_block
    assert "A baseline is a report.json you keep" in section and "--accept-model-change" in section


@pytest.mark.slow
def test_a_built_wheel_carries_the_docs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                           str(tmp_path), str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("edgedeploy-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        assert {"edgedeploy/guide/README.md", "edgedeploy/guide/validation.md", "edgedeploy/guide/tensorrt.md"} <= names
        assert "## Your own model" in z.read("edgedeploy/guide/README.md").decode()
