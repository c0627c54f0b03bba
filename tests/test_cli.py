"""The command line's error paths: one line, the right exit code, no traceback, nothing written."""

from __future__ import annotations

import subprocess
import sys

import pytest


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgedeploy.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_trt_without_tensorrt_says_what_to_install(tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here, so the missing-SDK path cannot be exercised")
    except (ImportError, OSError):
        pass
    result = run_cli("build", "--target", "trt", "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    line = one_error_line(result)
    assert "TensorRT is not installed" in line and "pip install" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, value", [("--target", "tpu"), ("--precision", "fp8")])
def test_invalid_flag_values(tmp_path, flag, value):
    result = run_cli("build", flag, value, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert f"invalid {flag} '{value}'" in one_error_line(result)


def test_bad_config_is_a_usage_error(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("model: {onnx: m.onnx}\ninputs: [{name: x, shape: [1, 3]}]\nsurprise: 1\n")
    result = run_cli("build", str(config))
    assert result.returncode == 2
    line = one_error_line(result)
    assert "unknown key `surprise`" in line and str(config) in line


def test_debug_shows_the_traceback(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("surprise: 1\n")
    result = run_cli("--debug", "build", str(config))
    assert result.returncode == 2
    assert "Traceback" in result.stderr
