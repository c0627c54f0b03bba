"""`edgedeploy remote` against a real OpenSSH server on 127.0.0.1 (tests/sshd_helpers.py): a build and a validate
round trip, the device's exit code, a wrong host key, and a connection dropped mid-transfer and mid-build."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edgedeploy import fileio
from edgedeploy.bundle.manifest import open_bundle

from cli_helpers import error_line, run_cli
from sshd_helpers import SshServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ssh = SshServer(tmp_path_factory.mktemp("sshd")).start()
    yield ssh
    ssh.stop()


@pytest.fixture
def own_server(tmp_path):
    """A server for one test, which kills it."""
    ssh = SshServer(tmp_path / "sshd").start()
    yield ssh
    ssh.stop()


def ssh_args(server: SshServer, remote_dir: Path) -> list[str]:
    return ["-F", str(server.config), "--venv", sys.prefix, "--remote-dir", str(remote_dir)]


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): fileio.sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def previous_build(demo_bundle, tmp_path_factory) -> Path:
    """A good local build folder, as a previous run left it, for the failure tests to show it survives."""
    out = tmp_path_factory.mktemp("previous") / "out"
    done = run_cli("build", str(demo_bundle), "--target", "onnxruntime", "--out", str(out), cwd=out.parent)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow  # sshd on 127.0.0.1 and the demo bundle
def test_build_and_validate_round_trip(server, demo_bundle, tmp_path):
    remote = tmp_path / "device"
    first = run_cli("remote", "device", "build", str(demo_bundle), "--target", "onnxruntime", "--out", "out",
                    *ssh_args(server, remote), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "copying the bundle" in first.stderr and "✓ validate" in first.stderr  # the device's progress, streamed
    out = tmp_path / "out"
    report = json.loads((out / "report.json").read_text())
    assert report["passed"] and report["target"] == "onnxruntime" and report["kind"] == "build"
    record = json.loads((out / "remote.json").read_text())
    assert record["exit_code"] == 0 and record["bundle_uploaded"] is True
    assert set(record["seconds"]) == {"connect", "upload", "remote", "fetch"}
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(fileio.sha256_file(out / rel) == digest for rel, digest in manifest["files"].items())
    sha = open_bundle(demo_bundle).sha256
    assert (remote / "bundles" / sha[:16] / "bundle.json").is_file()
    assert list((remote / "runs").iterdir()) == []  # the run's folder is removed once fetched
    print(f"\nremote build round trip: {record['seconds']}")

    second = run_cli("remote", "device", "build", str(demo_bundle), "--target", "onnxruntime", "--out", "out",
                     *ssh_args(server, remote), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "the device has this bundle already" in second.stderr
    again = json.loads((out / "remote.json").read_text())
    assert again["bundle_uploaded"] is False and "upload" not in again["seconds"]
    assert json.loads((out / "report.json").read_text())["created"] >= report["created"]

    validated = run_cli("remote", "device", "validate", "out", "--junit", "junit.xml", *ssh_args(server, remote),
                        cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr
    checks = json.loads((tmp_path / "out-validate" / "report.json").read_text())["checks"]
    assert checks[0]["name"] == "artifact.files_unchanged" and all(c["passed"] for c in checks)
    assert 'failures="0"' in (tmp_path / "junit.xml").read_text()
    record = json.loads((tmp_path / "out-validate" / "remote.json").read_text())
    print(f"remote validate round trip: {record['seconds']}")


@pytest.mark.slow  # sshd on 127.0.0.1 and the demo bundle
@pytest.mark.skipif(__import__("importlib.util").util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here: the device would build the plan")
def test_device_exit_code_comes_back(server, demo_bundle, previous_build, tmp_path):
    """The device's failure is shown as the device printed it and is the command's exit code; the local folder
    is not touched when the device wrote nothing."""
    before = snapshot(previous_build)
    done = run_cli("remote", "device", "build", str(demo_bundle), "--target", "trt", "--out", str(previous_build),
                   *ssh_args(server, tmp_path / "device"), cwd=tmp_path)
    assert done.returncode == 1
    assert "error: TensorRT is not installed" in done.stderr
    assert "the device wrote no output folder" in done.stderr and "exit code 1" in done.stderr
    assert snapshot(previous_build) == before


@pytest.mark.slow  # sshd on 127.0.0.1 and the demo bundle
def test_wrong_host_key_is_refused(server, demo_bundle, tmp_path):
    """USER@HOST:PORT with options instead of a config; known_hosts holds another key for the address."""
    folder = server.folder
    done = run_cli("remote", f"{server.user}@127.0.0.1:{server.port}", "build", str(demo_bundle), "--out", "out",
                   "--ssh-option", f"IdentityFile={folder / 'user_key'}", "--ssh-option", "IdentitiesOnly=yes",
                   "--ssh-option", f"UserKnownHostsFile={folder / 'wrong_known_hosts'}",
                   "--ssh-option", "StrictHostKeyChecking=yes", "--ssh-option", "BatchMode=yes",
                   "--venv", sys.prefix, "--remote-dir", str(tmp_path / "device"), cwd=tmp_path)
    assert done.returncode == 1
    assert error_line(done) == (
        f"error: {server.user}@127.0.0.1:{server.port}: the device's host key does not match the one in known_hosts "
        "(ssh: Host key verification failed). if the device was reinstalled, check its new key's fingerprint on the "
        "device and remove the old one with `ssh-keygen -R HOST`; otherwise do not connect")
    assert not (tmp_path / "out").exists() and not (tmp_path / "device").exists()


def dropped(server: SshServer, command: list[str], cwd: Path, when: str,
            busy: Callable[[], bool]) -> tuple[int, str]:
    """Run `command`; once its stderr shows `when` and `busy()` says the device side is mid-work (a file it is
    writing has appeared), kill the server. Returns (code, stderr)."""
    proc = subprocess.Popen(command, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "COLUMNS": "1000"})
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if when in line:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert seen.wait(120), "".join(lines)
    deadline = time.monotonic() + 120
    while not busy():
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)  # finished, or never got busy
        time.sleep(0.02)
    server.kill()
    code = proc.wait(60)
    reader.join(10)
    return code, "".join(lines)


def partial_upload(remote: Path) -> Callable[[], bool]:
    """Part of the bundle has reached the device (its partial name holds bytes)."""
    return lambda: any(".partial-" in str(p) and p.is_file() and p.stat().st_size > 0
                       for p in (remote / "bundles").rglob("*"))


def device_building(remote: Path) -> Callable[[], bool]:
    """The device's build has written into its staging folder."""
    return lambda: any((remote / "runs").glob("*/.out.staging/*"))


@pytest.mark.slow  # sshd on 127.0.0.1 and the demo bundle
def test_connection_dropped_mid_upload(own_server, demo_bundle, previous_build, tmp_path):
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(previous_build), str(out)], check=True)
    before = snapshot(out)
    remote = tmp_path / "device"
    command = [sys.executable, "-m", "edgedeploy.cli", "remote", "device", "build", str(demo_bundle), "--target",
               "onnxruntime", "--out", str(out), "--bwlimit", "400", *ssh_args(own_server, remote)]
    code, stderr = dropped(own_server, command, tmp_path, "copying the bundle", partial_upload(remote))
    assert code == 1, stderr
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: device: the SSH connection was lost while copying demo-bundle to the device"), stderr
    assert "Traceback" not in stderr
    assert snapshot(out) == before
    sha = open_bundle(demo_bundle).sha256
    assert not (remote / "bundles" / sha[:16]).exists()  # only the partial upload, never used


@pytest.mark.slow  # sshd on 127.0.0.1 and the demo bundle
def test_connection_dropped_while_the_device_builds(own_server, demo_bundle, previous_build, tmp_path):
    out = tmp_path / "out"
    subprocess.run(["cp", "-a", str(previous_build), str(out)], check=True)
    before = snapshot(out)
    command = [sys.executable, "-m", "edgedeploy.cli", "remote", "device", "build", str(demo_bundle), "--target",
               "onnxruntime", "--out", str(out), *ssh_args(own_server, tmp_path / "device")]
    code, stderr = dropped(own_server, command, tmp_path, "✓ bundle", device_building(tmp_path / "device"))
    assert code == 1, stderr
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: device: the SSH connection was lost while the device built (the device may "
                           "still be working in"), stderr
    assert snapshot(out) == before


@pytest.mark.slow  # sshd on 127.0.0.1 and the demo bundle
def test_device_without_edgedeploy(server, demo_bundle, tmp_path):
    done = run_cli("remote", "device", "build", str(demo_bundle), "--out", "out", "-F", str(server.config),
                   "--venv", "/nonexistent/venv", "--remote-dir", str(tmp_path / "device"), cwd=tmp_path)
    assert done.returncode == 1
    assert error_line(done).startswith("error: device: edgedeploy is not installed on the device (looked for "
                                       "/nonexistent/venv/bin/edgedeploy in /nonexistent/venv)")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text, host, port", [("jetson", "jetson", None), ("me@orin.local", "me@orin.local", None),
                                              ("me@10.0.0.7:2222", "me@10.0.0.7", 2222),
                                              ("me@[fe80::1]:22", "me@fe80::1", 22)])
def test_destination(text, host, port):
    from edgedeploy.remote.ssh import Destination, Ssh

    d = Destination.parse(text)
    assert (d.host, d.port) == (host, port)
    scp_host = Ssh(d)._remote_host()
    assert scp_host == (host.replace("fe80::1", "[fe80::1]") if ":" in host else host)
    assert Ssh(Destination.parse("[::1]"))._remote_host() == "[::1]"


@pytest.mark.parametrize("text", ["me@host:99999", "me@host:port", "a b", ""])
def test_bad_destination_is_a_usage_error(text):
    from edgedeploy.errors import UsageError
    from edgedeploy.remote.ssh import Destination

    with pytest.raises(UsageError):
        Destination.parse(text)
