"""README.md tells the truth: every command in its ```bash blocks runs as shown, in order, in a scratch copy of the
repository (its folders linked, `out/` fresh), and exits 0 — except the commands listed in NOT_RUN with the reason.
A command added to the README runs here unless it is added to NOT_RUN too; a NOT_RUN entry that matches no README
command fails, so the list cannot go stale."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # four demo builds and a validate: ~3 minutes on 2 cores

# command prefix -> why it is not run here
NOT_RUN = {
    "python3 -m venv --system-site-packages": "on a Jetson (tests/test_bundle_notorch.py installs edgedeploy without "
                                              "PyTorch in a fresh venv and builds a bundle there)",
    "~/edgedeploy-venv/bin/pip install": "on a Jetson (see above)",
    "edgedeploy build bundle/ --target trt": "needs TensorRT on an NVIDIA device",
    "edgedeploy validate out/orin-fp16": "needs the TensorRT build above",
    "edgedeploy bundle mynet.yaml": "needs your own model (mypackage.models:build_mynet)",
    "ssh-keygen -t ed25519": "makes a signing key in ~/.ssh (tests/bad_input/test_bundle.py signs and checks bundles "
                             "with keys made the same way)",
    "echo 'ci@fleet": "on a device: its allowed_signers file (tests/bad_input/test_bundle.py writes one)",
    "edgedeploy remote": "needs a device over SSH (tests/test_remote.py runs it against a loopback OpenSSH server)",
    "python3 -m venv": "set-up: .ci/run runs the README's set-up commands on a clean clone",
    "pip install torch": "set-up (.ci/run)",
    "pip install -e": "set-up (.ci/run)",
    "pip install --no-deps -r tools/corpus-packages-ci.txt": "set-up (.ci/run)",
    "pytest": "the test suite itself",
    "edgedeploy build --target openvino --precision int8": "over a minute: export, NNCF calibration on 300 images "
                                                           "and the per-layer error take ~70 s on 2 cores",
    "edgedeploy build mynet.yaml": "needs your own model (mypackage.models:build_mynet)",
    "edgedeploy debug precision out/demo-ov8": "needs the int8 build above (over a minute); with --search ~90 s",
    "edgedeploy build convnext.yaml": "needs timm with a torchvision built for the installed torch "
                                      "(tests/models/test_package_sources.py builds every family in CI's model "
                                      "environment)",
    "sudo apt install python3-venv": "on a Jetson (see above)",
    "mkdir -p ~/.config/edgedeploy": "on a device: the folder of its allowed_signers file (see below)",
}


def readme_commands() -> list[str]:
    """The command lines of README.md's ```bash blocks, comments stripped, continuation lines joined, in order."""
    text = (ROOT / "README.md").read_text()
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in re.sub(r"\\\n\s*", "", block).splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _skipped(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if command.startswith(prefix)), None)


def test_not_run_names_only_readme_commands():
    commands = readme_commands()
    stale = [prefix for prefix in NOT_RUN if not any(c.startswith(prefix) for c in commands)]
    assert not stale, f"NOT_RUN entries match no README command: {stale}"
    assert any(_skipped(c) is None for c in commands)


def test_every_readme_command_runs(tmp_path):
    for entry in ROOT.iterdir():  # a scratch copy: the repository's files, but out/ and edgedeploy-out/ here
        if entry.name not in (".git", "out", "edgedeploy-out") and not entry.name.startswith("."):
            (tmp_path / entry.name).symlink_to(entry)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("COLUMNS", None)
    ran = []
    for command in readme_commands():
        if _skipped(command):
            continue
        start = time.perf_counter()
        result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600)
        ran.append(f"{time.perf_counter() - start:6.1f} s  {command}")
        assert result.returncode == 0, f"{command}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
        assert not re.search(r"error:", result.stderr), result.stderr
    print("\n".join(ran))
    assert len(ran) >= 5, ran  # the quickstart builds, the training graph and validate ran
    junit = tmp_path / "out" / "junit.xml"
    assert junit.is_file() and "<testsuite" in junit.read_text()
    assert (tmp_path / "out" / "demo-ov-validate" / "report.html").is_file()
