"""The bad-input matrix: signals. A build killed with SIGKILL mid-stage leaves the previous build whole; SIGINT and
SIGTERM are answered with one line, exit 130 / 143, and leave no staging folder."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys

import pytest

from bad_input.matrix import LATENCY, build, leftovers, snapshot, wait_for
from edgedeploy import fileio

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds


@pytest.mark.parametrize("stage", ["export", "build"])
def test_sigkill_mid_build_leaves_the_previous_build_whole(bench, tmp_path, stage):
    """Killed after the `stage` line (export: optimizing or later; build: validating, every new artifact written)."""
    out = tmp_path / "out"
    shutil.copytree(bench.built, out)
    before = snapshot(out)
    slow = bench.config(tmp_path, validation={"latency": {**LATENCY, "duration_s": 60}})
    proc = subprocess.Popen([sys.executable, "-m", "edgedeploy.cli", *build(slow, out)], stderr=subprocess.PIPE)
    wait_for(proc, f"✓ {stage}")
    assert (tmp_path / ".out.staging" / "raw.onnx").is_file()  # it was writing its own files
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)

    assert snapshot(out) == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(fileio.sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]

    bench.build(bench.config(tmp_path, name="again.yaml"), out)  # lock released by the kernel, leftovers cleared
    assert leftovers(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(fileio.sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())
