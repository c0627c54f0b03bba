"""The command line's --debug switch; its error paths (one line, the right exit code, no traceback, nothing written)
are the matrix in tests/test_bad_input.py."""

from __future__ import annotations

from cli_helpers import run_cli


def test_debug_shows_the_traceback(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("surprise: 1\n")
    result = run_cli("--debug", "build", str(config))
    assert result.returncode == 2
    assert "Traceback" in result.stderr
