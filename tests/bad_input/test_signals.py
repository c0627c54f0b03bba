"""The bad-input matrix: signals. A build killed with SIGKILL mid-stage leaves the previous build whole; SIGINT and
SIGTERM are answered with one line, exit 130 / 143, and leave no staging folder."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bad_input.matrix import LATENCY, build, leftovers, snapshot, wait_for, write_row
from bad_input.test_bundle import rehashed
from bad_input.test_remote import remote, unsigned_bundle
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


def slow_bundle(bench, here: Path) -> Path:
    """The bench's bundle with a 60 s latency run, so a signal lands while it validates."""
    return rehashed(unsigned_bundle(bench, here),
                    lambda spec: spec["validation"]["latency"].update(duration_s=60))


def command(kind: str, bench, here: Path, out: Path) -> tuple[list[str], str]:
    """(arguments, the progress line after which the signal is sent) of each command a signal may interrupt."""
    if kind == "build":
        slow = bench.config(here, validation={"latency": {**LATENCY, "duration_s": 60}})
        return build(slow, out), "✓ build"
    if kind == "bundle":  # the demo's PyTorch export, not cached
        return ["bundle", "--out", str(out), "--no-cache"], "edgedeploy bundle"
    if kind == "build BUNDLE":
        return ["build", str(slow_bundle(bench, here)), "--target", "onnxruntime", "--out", str(out)], "✓ build"
    return remote(bench, here, "build", str(slow_bundle(bench, here)), "--target", "onnxruntime", "--out",
                  str(out)), "✓ build"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("kind", ["build", "bundle", "build BUNDLE", "remote"])
def test_a_signal_is_answered_in_one_line(bench, tmp_path, kind, sig):
    """SIGINT / SIGTERM mid-command: exit 130 / 143 with one `interrupted; <folder> unchanged` line after the
    progress, the previous folder as it was, no staging folder left; `remote` also stops the device's command."""
    out = tmp_path / "out"
    if kind != "bundle":
        shutil.copytree(bench.built, out)
    before = snapshot(out)
    args, after = command(kind, bench, tmp_path, out)
    proc = subprocess.Popen([sys.executable, "-m", "edgedeploy.cli", *args], stderr=subprocess.PIPE, text=True)
    seen = wait_for(proc, after)
    if kind == "bundle":
        time.sleep(2)  # inside the export
    proc.send_signal(sig)
    _, rest = proc.communicate(timeout=120)
    result = subprocess.CompletedProcess(args, proc.returncode, "", seen + rest)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    write_row(__name__, f"{sig.name} during {kind}", result, 128 + sig, lines[-1] if lines else "", tmp_path,
              bench.root, signal_case=True)
    assert proc.returncode == 128 + sig, result.stderr
    said = f"interrupted; {out} unchanged"
    if kind == "remote":
        assert lines[-1].startswith(said + "; stopped the device's command (process group "), result.stderr
        pgid = int(next((tmp_path / "device" / "runs").glob("*/pgid")).read_text())
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/{pgid}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not os.path.exists(f"/proc/{pgid}"), "the device's command runs on"
    else:
        assert lines[-1] == said, result.stderr
    assert not [line for line in lines[:-1] if line.startswith(("error", "internal", "interrupted", "Traceback"))]
    assert snapshot(out) == before
    assert leftovers(out) == []


def test_a_second_signal_exits_at_once(bench, tmp_path):
    out = tmp_path / "out"
    args, after = command("build", bench, tmp_path, out)
    proc = subprocess.Popen([sys.executable, "-m", "edgedeploy.cli", *args], stderr=subprocess.PIPE, text=True)
    wait_for(proc, after)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143


def test_an_interrupt_a_library_turns_into_another_error_is_still_answered_as_one(tmp_path):
    """A library may catch the interrupt and fail otherwise (torch's exporter, cut off inside an import, reports
    `module 'torch._dynamo' has no attribute 'exc'`): once SIGTERM arrived, the answer is still `interrupted; ...`,
    exit 143, not the library's error. The factory here does what such a library does."""
    (tmp_path / "swallowing.py").write_text(
        "import pathlib, time\n"
        "def build():\n"
        "    pathlib.Path('started').write_text('')\n"
        "    try:\n"
        "        time.sleep(60)\n"
        "    except KeyboardInterrupt:\n"
        "        raise AttributeError(\"module 'somelib' has no attribute 'exc'\") from None\n")
    (tmp_path / "spec.yaml").write_text(
        "name: swallowing\nmodel: {factory: swallowing:build}\n"
        "inputs: [{name: x, shape: [batch, 3, 8, 8]}]\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "edgedeploy.cli", "build", "spec.yaml", "--target", "onnxruntime",
                             "--out", str(out)], cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "started").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert (tmp_path / "started").exists(), proc.communicate(timeout=5)[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 143, err
    assert lines[-1].startswith("interrupted;") and "somelib" not in err, err
    assert not out.exists()
