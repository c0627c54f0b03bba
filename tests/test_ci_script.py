"""`.ci/run` must leave the checkout as a user's clone: what it creates is git-ignored, so the workflow test's emulated
`actions/checkout` (tracked and unignored files) never copies a multi-GB virtual environment into each runner."""
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_venv_ci_creates_is_ignored_by_git():
    script = (REPO / ".ci/run").read_text()
    venvs = set(re.findall(r"-m venv (\S+)", script))
    assert {".ci-venv", ".ci-venv-py310", ".ci-models-venv"} <= venvs
    for venv in sorted(venvs):
        done = subprocess.run(["git", "check-ignore", "-q", f"{venv}/bin/python"], cwd=REPO)
        assert done.returncode == 0, f"{venv}/ is not in .gitignore"
