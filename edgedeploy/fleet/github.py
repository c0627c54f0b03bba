"""`edgedeploy ci github`: a GitHub Actions workflow that builds and validates one model on every kind of device.

GitHub does the scheduling (no scheduler of ours): a hosted runner checks the repository out, installs edgedeploy
from it with PyTorch and makes the bundle; one job per device kind × precision runs on a self-hosted runner with that
kind's labels (e.g. `[self-hosted, jetson, orin-nano]`), checks out and cleans its workspace, installs edgedeploy
from the same repository into a fresh venv without PyTorch (TensorRT from the system, e.g. JetPack, with cuda-python
pinned to the device's CUDA major), builds and validates the bundle and uploads that one run's folder; a summary job
merges every report into one table (`edgedeploy report merge`) for the run's summary page.

Nothing the user gives is pasted into a `run:` script: GitHub expands `${{ }}` before the shell runs, so quoting
would not help. User strings reach the scripts only as environment variables, `${{` in any of them is refused, and
names, labels and the Python version must match a plain character set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, get_args

import yaml

from edgedeploy import __version__
from edgedeploy.config import Precision, Target
from edgedeploy.errors import UsageError

_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # device names and runner labels
_DEVICE = re.compile(r"([^=]*)=([^:]*)(?::([^:]*))?(?::([^:]*))?")
_CUDA_MAJOR = {"trt": 12}  # JetPack 6 (Orin) ships CUDA 12; give `:trt:13` for JetPack 7 (Thor)
_MAX_TIMEOUT = 360  # GitHub's own limit for a job, in minutes


def _refuse_expression(text: str, what: str) -> None:
    if "${{" in text:
        raise UsageError(f"{what} {text!r} holds '${{{{': GitHub would expand it before any script runs",
                         fix="remove the expression; give a plain value")
    if any(ord(c) < 32 for c in text):
        raise UsageError(f"{what} {text!r} holds a control character", fix="give it on one line")


@dataclass(frozen=True)
class DeviceKind:
    name: str  # the matrix entry, part of every artifact's name
    labels: list[str]  # the self-hosted runner labels a job of this kind runs on
    target: str
    cuda_major: int | None = None  # trt: the device's CUDA major version, which cuda-python must match

    @classmethod
    def parse(cls, text: str) -> DeviceKind:
        """`NAME=LABEL,LABEL[:TARGET[:CUDA_MAJOR]]`, e.g. `orin-nano=self-hosted,jetson,orin-nano:trt` (target
        default trt, CUDA major default 12 as on JetPack 6)."""
        _refuse_expression(text, "--device")
        example = "write NAME=LABEL,LABEL[:TARGET[:CUDA_MAJOR]], e.g. orin-nano=self-hosted,jetson,orin-nano:trt"
        match = _DEVICE.fullmatch(text.strip())
        if not match:
            raise UsageError(f"cannot read --device {text!r}", fix=example)
        name, labels, target, cuda = match.groups()
        label_list = [label.strip() for label in labels.split(",") if label.strip()]
        for word in [name, *label_list]:
            if not _WORD.fullmatch(word):
                raise UsageError(f"cannot read --device {text!r}: {word!r} is not a plain name or label "
                                 "(letters, digits, '.', '_', '-')", fix=example)
        if not label_list:
            raise UsageError(f"cannot read --device {text!r}: no runner labels", fix=example)
        target = target or "trt"
        if target not in get_args(Target):
            raise UsageError(f"unknown target {target!r} in --device {text!r}",
                             fix=f"use one of: {', '.join(get_args(Target))}")
        if cuda is not None and (target != "trt" or not cuda.isdigit() or not 11 <= int(cuda) <= 99):
            raise UsageError(f"cannot read --device {text!r}: a CUDA major ({cuda!r}) goes with target trt only, "
                             "as a number such as 12", fix=example)
        major = int(cuda) if cuda else _CUDA_MAJOR.get(target)
        return cls(name, label_list, target, major)

    def extra_requirement(self) -> str:
        """What this kind needs beyond edgedeploy's own requirements: cuda-python of the device's CUDA major for
        TensorRT (TensorRT itself comes from the system)."""
        return f"cuda-python>={self.cuda_major},<{self.cuda_major + 1}" if self.cuda_major else ""


def _check_inputs(devices: list[DeviceKind], precisions: list[str], config: str | None, install: str,
                  python: str, device_timeout: int, module_root: str) -> None:
    if not devices:
        raise UsageError("no --device given", fix="name each kind of device, e.g. --device "
                                                  "orin-nano=self-hosted,jetson,orin-nano:trt")
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise UsageError(f"device names repeat: {names}", fix="give each --device its own NAME")
    for d in devices:  # a DeviceKind built in Python, not parsed, is held to the same rules
        if not all(_WORD.fullmatch(w) for w in [d.name, *d.labels]) or d.target not in get_args(Target):
            raise UsageError(f"device kind {d.name!r} has a name, label or target outside the plain set",
                             fix="letters, digits, '.', '_', '-'")
    bad = [p for p in precisions if p not in get_args(Precision)]
    if bad or not precisions:
        raise UsageError(f"invalid precision {bad[0] if bad else 'list (empty)'!r}",
                         fix=f"use one of: {', '.join(get_args(Precision))}")
    for value, what in ((config, "config path"), (install, "--install"), (module_root, "--module-root"),
                        (python, "--python")):
        if value is not None:
            _refuse_expression(value, what)
    if not re.fullmatch(r"3\.[0-9]{1,2}", python):
        raise UsageError(f"--python {python!r} is not a Python version such as 3.11", fix="give 3.MINOR")
    if module_root.startswith("/") or ".." in module_root.split("/"):
        raise UsageError(f"--module-root {module_root!r} leaves the repository",
                         fix="give a folder inside the repository, e.g. src or .")
    if not isinstance(device_timeout, int) or not 0 < device_timeout <= _MAX_TIMEOUT:
        raise UsageError(f"--timeout {device_timeout!r} is not a number of minutes from 1 to {_MAX_TIMEOUT}",
                         fix="give a positive number of minutes")


def workflow(devices: list[DeviceKind], precisions: list[str], config: str | None = None,
             install: str | None = None, python: str = "3.11", device_timeout: int = 120,
             module_root: str = ".", signed: bool = True) -> str:
    """The workflow file's text.

    `install` is the pip requirement of edgedeploy, by default `.` (the repository the workflow runs in: a fork of
    edgedeploy, or your project when its pyproject depends on edgedeploy); `module_root` is the folder of your
    repository that holds the model's package (the factory the spec names is imported from there, as on your
    workstation with `PYTHONPATH=module_root`); `device_timeout` (minutes) bounds each device job (a TensorRT build on
    a small Jetson takes minutes, and a hung device must not hold the fleet). `signed` (the default): the bundle job
    signs bundle.json with the repository secret EDGEDEPLOY_SIGNING_KEY (an OpenSSH private key) and every device
    refuses a bundle not signed by a key in its allowed_signers file ($EDGEDEPLOY_ALLOWED_SIGNERS in the runner's
    environment, else ~/.config/edgedeploy/allowed_signers; docs/bundles.md)."""
    install = install or "."
    _check_inputs(devices, precisions, config, install, python, device_timeout, module_root)
    precision_args = " ".join(f"--precision {p}" for p in precisions)  # validated names only
    run_name = "${{ matrix.device }}-${{ matrix.precision }}"
    requirement = {"EDGEDEPLOY_REQUIREMENT": install}
    checkout = {"name": "Check out (cleans the workspace: nothing of an earlier run is left)",
                "uses": "actions/checkout@v5", "with": {"persist-credentials": False, "clean": True}}
    jobs: dict[str, Any] = {
        "bundle": {
            "name": "Make the bundle (with PyTorch)",
            "runs-on": "ubuntu-latest",
            "timeout-minutes": 60,
            "env": {**requirement, "EDGEDEPLOY_EXPORT_REQUIREMENT": _with_export(install),
                    "MODULE_ROOT": module_root, "CONFIG": config or "",
                    **({"EDGEDEPLOY_SIGNING_KEY": "${{ secrets.EDGEDEPLOY_SIGNING_KEY }}"} if signed else {})},
            "steps": [
                checkout,
                {"uses": "actions/setup-python@v6", "with": {"python-version": python}},
                {"name": "Install edgedeploy from the repository, with the export extra",
                 "run": 'python -m pip install "$EDGEDEPLOY_EXPORT_REQUIREMENT"'},
                {"name": "Make the bundle (the model's package is imported from MODULE_ROOT)"
                         + (", signed with the secret EDGEDEPLOY_SIGNING_KEY" if signed else ""),
                 "run": 'export PYTHONPATH="$GITHUB_WORKSPACE/$MODULE_ROOT${PYTHONPATH:+:$PYTHONPATH}"\n'
                        'rm -rf bundle\n'
                        + (_SIGN_SCRIPT if signed else "")
                        + f'edgedeploy bundle ${{CONFIG:+"$CONFIG"}} --out bundle {precision_args}'
                        + (' --sign "$key"\n' if signed else "\n")},
                {"uses": "actions/upload-artifact@v6",
                 "with": {"name": "bundle", "path": "bundle/", "if-no-files-found": "error"}},
            ],
        },
        "device": {
            "name": f"Build and validate on {run_name}",
            "needs": "bundle",
            "runs-on": "${{ matrix.labels }}",
            "timeout-minutes": device_timeout,
            "strategy": {"fail-fast": False, "matrix": {
                "device": [d.name for d in devices], "precision": list(precisions),
                "include": [{"device": d.name, "labels": d.labels, "target": d.target,
                             "extra": d.extra_requirement()} for d in devices]}},
            "env": {**requirement, "TARGET": "${{ matrix.target }}", "PRECISION": "${{ matrix.precision }}",
                    "EXTRA_REQUIREMENT": "${{ matrix.extra }}", "RUN": f"out/{run_name}"},
            "steps": [
                checkout,
                {"name": "Remove what an earlier run left outside the repository's files",
                 "run": "rm -rf bundle out\n"},
                {"uses": "actions/download-artifact@v7", "with": {"name": "bundle", "path": "bundle"}},
                {"name": "Install edgedeploy from the repository, without PyTorch (TensorRT from the system, e.g. "
                         "JetPack; python3-venv must be installed)",
                 "run": 'python3 -m venv --system-site-packages "$RUNNER_TEMP/edgedeploy-venv"\n'
                        '"$RUNNER_TEMP/edgedeploy-venv/bin/python" -m pip install "$EDGEDEPLOY_REQUIREMENT"\n'
                        'if [ -n "$EXTRA_REQUIREMENT" ]; then\n'
                        '  "$RUNNER_TEMP/edgedeploy-venv/bin/python" -m pip install "$EXTRA_REQUIREMENT"\n'
                        'fi\n'
                        'echo "$RUNNER_TEMP/edgedeploy-venv/bin" >> "$GITHUB_PATH"\n'},
                {"name": "Build and validate on the device" + (" (only a bundle signed by an allowed key)" if signed else ""),
                 "run": 'edgedeploy build bundle --target "$TARGET" --precision "$PRECISION" --out "$RUN"'
                        + (' \\\n    --allowed-signers "${EDGEDEPLOY_ALLOWED_SIGNERS:-$HOME/.config/edgedeploy/allowed_signers}"'
                           ' --require-signature' if signed else "")},
                {"name": "Upload this run's folder (one report per run)",
                 "uses": "actions/upload-artifact@v6", "if": "${{ !cancelled() }}",
                 "with": {"name": f"report-{run_name}", "path": "out/", "if-no-files-found": "warn"}},
            ],
        },
        "summary": {
            "name": "Fleet table",
            "needs": "device",
            "if": "${{ !cancelled() }}",
            "runs-on": "ubuntu-latest",
            "timeout-minutes": 15,
            "env": requirement,
            "steps": [
                checkout,
                {"uses": "actions/setup-python@v6", "with": {"python-version": python}},
                {"name": "Install edgedeploy from the repository", "run": 'python -m pip install '
                                                                          '"$EDGEDEPLOY_REQUIREMENT"'},
                {"uses": "actions/download-artifact@v7",
                 "with": {"pattern": "report-*", "path": "reports", "merge-multiple": True}},
                {"name": "Merge the reports", "run": "edgedeploy report merge reports/*/report.json --out fleet"},
                {"name": "Show the table", "if": "${{ !cancelled() && hashFiles('fleet/fleet.md') != '' }}",
                 "run": 'cat fleet/fleet.md >> "$GITHUB_STEP_SUMMARY"'},
                {"uses": "actions/upload-artifact@v6", "if": "${{ !cancelled() }}",
                 "with": {"name": "fleet", "path": "fleet/", "if-no-files-found": "warn"}},
            ],
        },
    }
    document = {"name": "edgedeploy fleet", "on": {"workflow_dispatch": {}, "push": {"branches": ["main"]}},
                "permissions": {"contents": "read"},
                "concurrency": {"group": "edgedeploy-fleet-${{ github.ref }}", "cancel-in-progress": True},
                "jobs": jobs}
    header = (f"# Written by `edgedeploy ci github` (edgedeploy {__version__}). One job per device kind x precision "
              f"runs on a\n# self-hosted runner with that kind's labels: {', '.join(d.name for d in devices)}.\n"
              "# A device runner needs python3 with venv (on JetPack: sudo apt install python3-venv python3-pip).\n")
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return header + text.replace("\n'on':\n", "\non:\n", 1)  # YAML 1.1 quotes the key; GitHub's docs do not


# the signing key from the secret into a file only this job's user reads, removed when the step ends
_SIGN_SCRIPT = ('if [ -z "$EDGEDEPLOY_SIGNING_KEY" ]; then\n'
                '  echo "::error::the repository secret EDGEDEPLOY_SIGNING_KEY (an OpenSSH private key) is not set: '
                'devices refuse unsigned bundles (edgedeploy docs bundles)"\n'
                '  exit 1\n'
                'fi\n'
                'key="$RUNNER_TEMP/bundle-signing-key"\n'
                "trap 'rm -f \"$key\"' EXIT\n"
                '(umask 077 && printf \'%s\\n\' "$EDGEDEPLOY_SIGNING_KEY" > "$key")\n')


class _Dumper(yaml.SafeDumper):
    """Scripts with several lines as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def _with_export(requirement: str) -> str:
    """The same requirement with the export extra: `.` → `.[export]`, `edgedeploy==0.1.0` →
    `edgedeploy[export]==0.1.0`, `NAME @ URL` and a bare URL → `NAME[export] @ URL`."""
    if requirement.startswith((".", "/")):
        return f"{requirement}[export]"
    named = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*@\s*(.+)", requirement)
    if named:
        return f"{_with_export(named.group(1) + (named.group(2) or ''))} @ {named.group(3)}"
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?(\s*[<>=!~].*)?", requirement)
    if match is None:
        return f"edgedeploy[export] @ {requirement}"
    extras = [e for e in (match.group(2) or "[]")[1:-1].split(",") if e.strip()]
    return f"{match.group(1)}[{','.join(sorted(set(extras) | {'export'}))}]{match.group(3) or ''}"


__all__ = ["DeviceKind", "workflow"]
