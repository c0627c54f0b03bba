"""The command line's --debug switch; its error paths (one line, the right exit code, no traceback, nothing written)
are the matrix in tests/bad_input/."""

from __future__ import annotations

from cli_helpers import run_cli


def test_debug_shows_the_traceback(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("surprise: 1\n")
    result = run_cli("--debug", "build", str(config))
    assert result.returncode == 2
    assert "Traceback" in result.stderr


def _commands(command, path=()):
    """Every (sub)command of the CLI with its path, groups included."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_command_takes_debug_and_shows_an_example():
    """`--debug` after the command name works everywhere (the error messages say "rerun with --debug"), and every
    command's help ends with an example."""
    import typer.main

    from edgedeploy.cli import app

    for path, command in _commands(typer.main.get_command(app)):
        opts = [o for p in command.params for o in getattr(p, "opts", [])]
        assert "--debug" in opts, f"edgedeploy {' '.join(path)} has no --debug (add `debug: bool = DEBUG`)"
        if not hasattr(command, "commands"):
            assert (command.epilog or "").lstrip("\b\n").startswith("Example: edgedeploy "), path


def test_debug_after_the_command_and_from_the_environment(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("surprise: 1\n")
    after = run_cli("build", str(config), "--debug")
    assert after.returncode == 2 and "Traceback" in after.stderr
    env = run_cli("validate", str(tmp_path / "nowhere"), env_debug="1")
    assert env.returncode == 2 and "Traceback" in env.stderr
    plain = run_cli("validate", str(tmp_path / "nowhere"))
    assert plain.returncode == 2 and "Traceback" not in plain.stderr


def test_help_shows_defaults_and_the_report_folders():
    import re

    build = re.sub(r"\s+", "", run_cli("build", "--help").stdout)
    assert "[default:(edgedeploy-out/NAME-TARGET-PRECISION)]" in build and "<bool>" not in build
    assert "JetPack" in build
    validate = re.sub(r"\s+", "", run_cli("validate", "--help").stdout)
    assert "[default:(ARTIFACT_DIR-validate)]" in validate and "--strict" in validate
    debug = re.sub(r"\s+", "", run_cli("debug", "precision", "--help").stdout)
    assert "[default:(ARTIFACT_DIR-debug-precision)]" in debug and "[default:32]" in debug


def test_an_error_that_quotes_a_sentence_does_not_end_in_two_dots():
    from edgedeploy.errors import EdgeDeployError

    e = EdgeDeployError("OpenVINO cannot compile the model: Unsupported layer.", where="m.xml", fix="check the op")
    assert e.message == "m.xml: OpenVINO cannot compile the model: Unsupported layer. check the op"
