"""`edgedeploy remote DEVICE build|validate ...`: run a build or a validation on a device over SSH, as if local.

On the device, under --remote-dir (relative paths are relative to the login's home):

    bundles/<sha16>/        a bundle, uploaded once and named by the sha256 of its bundle.json (an upload goes to
                            .<sha16>.partial-<run> first and is renamed when complete, so a cut transfer is never used)
    runs/<run>/             one command's folder: its output (`out/`), or for validate the artifact folder sent
                            (`artifact/`) and the reports (`validate/`); removed once fetched unless --keep-remote

The device's own `edgedeploy` (from the venv named by --venv) does the work; its progress is shown here as it comes.
It runs in a process group of its own (setsid), its ID in runs/<run>/pgid, so an interrupted `remote` (Ctrl-C,
SIGTERM) stops it there too and says so. The output is fetched into the local folder the way a build writes one
(edgedeploy.outfolder: staged beside it, checked, swapped in whole), so a lost connection leaves the local folder as it
was. What the device sends back is untrusted: the fetch is refused over a size budget (--max-fetch-mb, checked on the
device before the copy and here after it); a build folder must hold a manifest.json that its files match, and only
the files it lists and the build's own records are kept; a validate folder keeps only its reports; report.json is
read through its typed model (edgedeploy.fleet.merge). The command exits with the device command's exit status.
"""

from __future__ import annotations

import secrets
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgedeploy import fileio
from edgedeploy.bundle.manifest import open_bundle
from edgedeploy.errors import EdgeDeployError, UsageError
from edgedeploy.fleet.merge import read_report
from edgedeploy.outfolder import BUILD_MARKER, REPORT_MARKER, FolderLock, OutputFolder, report_path
from edgedeploy.remote.ssh import Ssh, remote_path
from edgedeploy.validate.gate import integrity_checks, read_manifest

REMOTE_RECORD = "remote.json"  # written beside the fetched reports: device, commands, timings
_REPORTS = ("report.json", "report.md", "report.html")
_BUILD_RECORDS = {"manifest.json", BUILD_MARKER, "optimize.json", *_REPORTS}  # besides the files manifest.json lists
_VALIDATE_FILES = {REPORT_MARKER, "junit.xml", *_REPORTS}


@dataclass
class RemoteJob:
    ssh: Ssh
    venv: str | None = None  # on the device; None: `edgedeploy` on the login's PATH
    remote_dir: str = ".edgedeploy/remote"
    keep_remote: bool = False
    columns: int = 120  # the device's rich output is laid out for this terminal width
    say: Callable[[str], None] = print
    max_fetch_bytes: int = 4 << 30  # a fetched folder larger than this is refused
    seconds: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.remote_dir = _home_relative(remote_path(self.remote_dir, "--remote-dir"))
        if self.venv is not None:
            remote_path(self.venv, "--venv")
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.run_dir = f"{self.remote_dir}/runs/{self.run_id}"

    def _edgedeploy(self) -> str:
        return f"{_home_relative(self.venv)}/bin/edgedeploy" if self.venv else "edgedeploy"

    def _timed(self, name: str, start: float) -> None:
        self.seconds[name] = round(time.perf_counter() - start, 3)

    # -------------------------------------------------------------------------------------------------- build
    def build(self, bundle_dir: Path, out: Path, args: list[str]) -> int:
        """Build the bundle on the device with `edgedeploy build BUNDLE ARGS`; fetch the folder into `out`."""
        bundle = open_bundle(bundle_dir)  # a broken bundle is refused here, before anything is sent
        folder = OutputFolder(out)
        folder.check()  # and a folder the fetch could not replace, before the device works for nothing
        start = time.perf_counter()
        with self.ssh:
            self._timed("connect", start)
            remote_bundle = f"{self.remote_dir}/bundles/{bundle.sha256[:16]}"
            present = self._prepare(f"test -f {shlex.quote(remote_bundle)}/bundle.json")
            if not present:
                size = sum(f["size"] for f in bundle.manifest["files"].values())
                self.say(f"copying the bundle ({size / 1e6:.1f} MB) to {self.ssh.destination}:{remote_bundle}")
                self._upload(bundle_dir, remote_bundle)
            else:
                self.say(f"the device has this bundle already ({remote_bundle})")
            code = self._run(["build", remote_bundle, *args, "--out", f"{self.run_dir}/out"], "the device built")
            self._fetch(f"{self.run_dir}/out", folder, {"command": "build", "bundle": bundle.sha256,
                                                        "bundle_uploaded": not present, "exit_code": code})
        return code

    # ----------------------------------------------------------------------------------------------- validate
    def validate(self, artifact_dir: Path, out: Path | None, args: list[str], files: dict[str, Path],
                 junit: Path | None) -> int:
        """Send a build folder, run `edgedeploy validate` on it on the device, fetch the reports (and JUnit XML)."""
        manifest, _ = read_manifest(artifact_dir)
        changed = integrity_checks(artifact_dir, manifest)[0]["changed"]
        if changed:
            raise UsageError(f"the artifact folder does not match its manifest.json ({', '.join(changed)})",
                             where=str(artifact_dir), fix="rebuild it, or fetch it again")
        folder = OutputFolder(report_path(artifact_dir, out, "validate"), kind="report")
        folder.check()
        start = time.perf_counter()
        with FolderLock(artifact_dir, shared=True), self.ssh:  # no local build replaces it while it is sent
            self._timed("connect", start)
            self._prepare()
            self.say(f"copying {artifact_dir} to {self.ssh.destination}:{self.run_dir}/artifact")
            self._upload(artifact_dir, f"{self.run_dir}/artifact")
            for flag, path in files.items():  # --baseline / --config files, sent beside the artifact
                self._upload(path, f"{self.run_dir}/{flag.strip('-')}{path.suffix}")
                args = [*args, flag, f"{self.run_dir}/{flag.strip('-')}{path.suffix}"]
            if junit is not None:
                args = [*args, "--junit", f"{self.run_dir}/validate/junit.xml"]
            code = self._run(["validate", f"{self.run_dir}/artifact", *args, "--out", f"{self.run_dir}/validate"],
                             "the device validated")
            self._fetch(f"{self.run_dir}/validate", folder, {"command": "validate", "exit_code": code}, junit=junit)
        return code

    # ------------------------------------------------------------------------------------------------ helpers
    def _prepare(self, test: str | None = None) -> bool:
        """One round trip: the device's edgedeploy exists, the run folder is made, and `test` (a shell test) holds."""
        exe = self._edgedeploy()
        script = (f"command -v {shlex.quote(exe)} >/dev/null 2>&1 || {{ echo missing-edgedeploy; exit 3; }}; "
                  f"mkdir -p {shlex.quote(self.run_dir)} {shlex.quote(self.remote_dir)}/bundles && "
                  f"{test or 'false'} && echo present; true")
        done = self.ssh.run(script, "checking the device")
        if "missing-edgedeploy" in done.stdout:
            venv = self.venv or "the login's PATH"
            raise EdgeDeployError(f"edgedeploy is not installed on the device (looked for {exe} in {venv})",
                                  where=str(self.ssh.destination),
                                  fix="install it there (python3 -m venv --system-site-packages VENV && VENV/bin/pip "
                                      "install edgedeploy) and pass --venv VENV")
        return "present" in done.stdout.split()

    def _upload(self, local: Path, remote: str) -> None:
        """Copy to a partial name, then rename: the final name exists only once the copy is complete."""
        start = time.perf_counter()
        partial = f"{remote}.partial-{self.run_id}"
        self.ssh.upload(local, partial, f"copying {local.name} to the device")
        quoted, quoted_partial = shlex.quote(remote), shlex.quote(partial)
        self.ssh.run(f"if [ -e {quoted} ]; then rm -rf {quoted_partial}; else mv {quoted_partial} {quoted}; fi",
                     "renaming the upload")
        self.seconds["upload"] = round(self.seconds.get("upload", 0) + time.perf_counter() - start, 3)

    def _run(self, args: list[str], what: str) -> int:
        """Run edgedeploy on the device in a process group of its own, its ID written to the run folder; interrupted
        here, the group is stopped there too."""
        start = time.perf_counter()
        pgid = shlex.quote(f"{self.run_dir}/pgid")
        inner = f'echo $$ > {pgid} && exec "$@"'
        script = (f"COLUMNS={self.columns} PYTHONUNBUFFERED=1 setsid -w sh -c {shlex.quote(inner)} sh "
                  + shlex.join([self._edgedeploy(), *args]))
        try:
            done = self.ssh.run(script, f"{what} (the device may still be working in {self.run_dir})", stream=True)
        except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM (edgedeploy.cli): stop the device's command, and say so
            e.note = self._stop_remote(pgid)
            raise
        self._timed("remote", start)
        return done.returncode

    def _stop_remote(self, pgid: str) -> str:
        try:
            done = self.ssh.run(f"p=$(cat {pgid} 2>/dev/null) && kill -TERM -- -\"$p\" 2>/dev/null && echo \"$p\"",
                                "stopping the device's command", timeout=15)
            stopped = done.stdout.strip()
        except (EdgeDeployError, OSError, subprocess.TimeoutExpired):
            stopped = ""
        if stopped:
            return f"stopped the device's command (process group {stopped} on {self.ssh.destination})"
        return f"the device's command could not be stopped: check {self.run_dir} on {self.ssh.destination}"

    def _fetch(self, remote: str, folder: OutputFolder, record: dict[str, Any], junit: Path | None = None) -> None:
        """Fetch the device's output folder into `folder` (staged, checked, swapped in whole); a command that wrote
        nothing (it failed before its first file) leaves the local folder as it was."""
        start = time.perf_counter()
        quoted = shlex.quote(remote)
        done = self.ssh.run(f"test -f {quoted}/report.json && echo written && du -sk {quoted}; true",
                            "checking the output")
        words = done.stdout.split()
        if "written" not in words:
            self.say(f"the device wrote no output folder; {folder.final} is unchanged")
            self._cleanup()
            return
        size_kib = words[1] if len(words) > 1 else ""
        if not size_kib.isdigit() or int(size_kib) * 1024 > self.max_fetch_bytes:
            raise EdgeDeployError(f"the device's output folder is {size_kib or 'of unknown size'} KiB, over the "
                                  f"fetch budget of {self.max_fetch_bytes >> 20} MiB; not fetched",
                                  where=f"{self.ssh.destination}:{remote}",
                                  fix=f"raise --max-fetch-mb if the folder is expected to be this big; "
                                      f"{folder.final} is unchanged")
        with folder:
            folder.staging.rmdir()  # scp -r creates it
            self.ssh.download(remote, folder.staging, "fetching the output folder")
            self._check_fetched(folder.staging, validate=record["command"] == "validate")
            if junit is not None:
                if not (folder.staging / "junit.xml").is_file():
                    raise EdgeDeployError("the device wrote a report but no JUnit XML", where=str(junit),
                                          fix=f"run the command again; {folder.final} is unchanged")
                fileio.write_bytes(junit, (folder.staging / "junit.xml").read_bytes())
                (folder.staging / "junit.xml").unlink()
            self._timed("fetch", start)
            fileio.write_json(folder.staging / REMOTE_RECORD, {
                "device": str(self.ssh.destination), "remote_folder": remote, **record, "seconds": self.seconds})
            folder.commit()
        self._cleanup()

    def _cleanup(self) -> None:
        if not self.keep_remote:
            self.ssh.run(f"rm -rf {shlex.quote(self.run_dir)}", "removing the run folder on the device")


    def _check_fetched(self, staging: Path, validate: bool) -> None:
        """What came back, checked before it may replace anything: within the size budget, a build folder with a
        manifest.json its files match, a report.json that reads; everything else (a file the manifest does not
        list, a link) removed."""
        size = sum(p.lstat().st_size for p in staging.rglob("*"))
        if size > self.max_fetch_bytes:
            raise EdgeDeployError(f"the fetched folder is {size >> 20} MiB, over the fetch budget of "
                                  f"{self.max_fetch_bytes >> 20} MiB", where=str(self.ssh.destination),
                                  fix="raise --max-fetch-mb if the folder is expected to be this big")
        if validate:
            keep = _VALIDATE_FILES
        else:
            if not (staging / "manifest.json").is_file():
                raise EdgeDeployError("the device's output folder has no manifest.json, so what it holds cannot be "
                                      "checked; not fetched", where=str(self.ssh.destination),
                                      fix="check the device's edgedeploy (edgedeploy --version there) and run the "
                                          "command again")
            manifest, _ = read_manifest(staging)
            changed = integrity_checks(staging, manifest)[0]["changed"]
            if changed:
                raise EdgeDeployError(f"the fetched folder does not match its manifest.json ({', '.join(changed)})",
                                      fix="run the command again")
            keep = _BUILD_RECORDS | set(manifest["files"])
        _keep_only(staging, keep)
        read_report(staging / "report.json")


def _keep_only(folder: Path, keep: set[str]) -> None:
    """Remove from `folder` every file whose relative path is not in `keep`, every link, and the folders left empty."""
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink() or (path.is_file() and rel not in keep) or not (path.is_file() or path.is_dir()):
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _home_relative(path: str | None) -> str | None:
    """`~/x` as `x`: remote commands start in the home folder, and a quoted `~` would not expand."""
    if path is None:
        return None
    return path[2:] if path.startswith("~/") else path


__all__ = ["RemoteJob", "REMOTE_RECORD"]
