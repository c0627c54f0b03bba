"""Running the real command line in a subprocess and reading its one error line (shared by the CLI tests)."""

from __future__ import annotations

import os
import subprocess
import sys

PROGRESS = ("edgedeploy build ", "✓ ", "PASS", "FAIL", "warning: ")  # how a build's progress lines start


def run_cli(*args: str, cwd=None, timeout: float = 300, env_debug: str | None = None,
            **popen) -> subprocess.CompletedProcess:
    """`edgedeploy ARGS` as a CI job runs it (no terminal, 80 columns: the CLI must not wrap its lines);
    `env_debug` sets EDGEDEPLOY_DEBUG."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "EDGEDEPLOY_DEBUG")}
    if env_debug is not None:
        env["EDGEDEPLOY_DEBUG"] = env_debug
    return subprocess.run([sys.executable, "-m", "edgedeploy.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=env, **popen)


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one `error:` line of a failed command: its last stderr line; any before it are a build's progress."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    assert lines and lines[-1].startswith("error:"), result.stderr
    assert all(line.startswith(PROGRESS) for line in lines[:-1]), result.stderr
    return lines[-1]
