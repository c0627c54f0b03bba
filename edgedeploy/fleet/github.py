"""`edgedeploy ci github`: a GitHub Actions workflow that builds and validates one model on every kind of device.

GitHub does the scheduling (no scheduler of ours): a hosted runner makes the bundle (it has PyTorch), one job per
device kind × precision runs on a self-hosted runner with that kind's labels (e.g. `[self-hosted, jetson,
orin-nano]`), installs edgedeploy without PyTorch, builds and validates the bundle there, and uploads its folder; a
summary job merges every report into one table (`edgedeploy report merge`) for the run's summary page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, get_args

import yaml

from edgedeploy import __version__
from edgedeploy.config import Target
from edgedeploy.errors import UsageError

_DEVICE = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)=([^:=]+)(?::([a-z]+))?")
_VENV = "$HOME/.edgedeploy/venv"  # kept between jobs on a self-hosted runner: pip skips what is installed


@dataclass(frozen=True)
class DeviceKind:
    name: str  # the matrix entry, part of every artifact's name
    labels: list[str]  # the self-hosted runner labels a job of this kind runs on
    target: str

    @classmethod
    def parse(cls, text: str) -> DeviceKind:
        """`NAME=LABEL,LABEL[:TARGET]`, e.g. `orin-nano=self-hosted,jetson,orin-nano:trt` (target default trt)."""
        match = _DEVICE.fullmatch(text.strip())
        if not match:
            raise UsageError(f"cannot read --device {text!r}", fix="write NAME=LABEL,LABEL[:TARGET], e.g. "
                                                                  "orin-nano=self-hosted,jetson,orin-nano:trt")
        name, labels, target = match.groups()
        target = target or "trt"
        if target not in get_args(Target):
            raise UsageError(f"unknown target {target!r} in --device {text!r}",
                             fix=f"use one of: {', '.join(get_args(Target))}")
        return cls(name, [label.strip() for label in labels.split(",") if label.strip()], target)


def workflow(devices: list[DeviceKind], precisions: list[str], config: str | None = None,
             install: str | None = None, python: str = "3.11", device_timeout: int = 120) -> str:
    """The workflow file's text; `device_timeout` (minutes) bounds each device job (a TensorRT build on a small
    Jetson takes minutes, and a hung device must not hold the fleet)."""
    if not devices:
        raise UsageError("no --device given", fix="name each kind of device, e.g. --device "
                                                  "orin-nano=self-hosted,jetson,orin-nano:trt")
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise UsageError(f"device names repeat: {names}", fix="give each --device its own NAME")
    install = install or f"edgedeploy=={__version__}"
    bundle_args = " ".join([*([_quote(config)] if config else []), "--out bundle",
                            *(f"--precision {p}" for p in precisions)])
    run_name = "${{ matrix.device }}-${{ matrix.precision }}"
    jobs: dict[str, Any] = {
        "bundle": {
            "name": "Make the bundle (with PyTorch)",
            "runs-on": "ubuntu-latest",
            "timeout-minutes": 60,
            "steps": [
                {"uses": "actions/checkout@v5", "with": {"persist-credentials": False}},
                {"uses": "actions/setup-python@v6", "with": {"python-version": python}},
                {"name": "Install edgedeploy with the export extra",
                 "run": f"pip install {_quote(_with_export(install))}"},
                {"name": "Make the bundle", "run": f"edgedeploy bundle {bundle_args}"},
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
                "device": names, "precision": list(precisions),
                "include": [{"device": d.name, "labels": d.labels, "target": d.target} for d in devices]}},
            "env": {"TARGET": "${{ matrix.target }}", "PRECISION": "${{ matrix.precision }}",
                    "RUN": f"out/{run_name}"},
            "steps": [
                {"uses": "actions/download-artifact@v7", "with": {"name": "bundle", "path": "bundle"}},
                {"name": "Install edgedeploy without PyTorch (TensorRT from the system, e.g. JetPack)",
                 "run": f'python3 -m venv --system-site-packages "{_VENV}"\n'
                        f'"{_VENV}/bin/pip" install --upgrade {_quote(install)}\n'
                        f'echo "{_VENV}/bin" >> "$GITHUB_PATH"\n'},
                {"name": "Build and validate on the device",
                 "run": 'edgedeploy build bundle --target "$TARGET" --precision "$PRECISION" --out "$RUN"'},
                {"name": "Validate again for JUnit XML", "if": "${{ !cancelled() && hashFiles(format('{0}/report.json', env.RUN)) != '' }}",
                 "run": 'edgedeploy validate "$RUN" --junit "$RUN/junit.xml"'},
                {"uses": "actions/upload-artifact@v6", "if": "${{ !cancelled() }}",
                 "with": {"name": f"report-{run_name}", "path": "out/", "if-no-files-found": "warn"}},
            ],
        },
        "summary": {
            "name": "Fleet table",
            "needs": "device",
            "if": "${{ !cancelled() }}",
            "runs-on": "ubuntu-latest",
            "timeout-minutes": 15,
            "steps": [
                {"uses": "actions/setup-python@v6", "with": {"python-version": python}},
                {"name": "Install edgedeploy", "run": f"pip install {_quote(install)}"},
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
              f"runs on a\n# self-hosted runner with that kind's labels: {', '.join(d.name for d in devices)}.\n")
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
    return header + text.replace("\n'on':\n", "\non:\n", 1)  # YAML 1.1 quotes the key; GitHub's docs do not


class _Dumper(yaml.SafeDumper):
    """Scripts with several lines as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def _with_export(requirement: str) -> str:
    """The same requirement with the export extra: `edgedeploy==0.1.0` → `edgedeploy[export]==0.1.0`, a path
    `.` → `.[export]`, a URL → `edgedeploy[export] @ URL`."""
    if requirement.startswith((".", "/")):
        return f"{requirement}[export]"
    match = re.fullmatch(r"([A-Za-z0-9_.-]+)(\[[^\]]*\])?(\s*[<>=!~].*)?", requirement)
    if match is None:
        return f"edgedeploy[export] @ {requirement}"
    extras = [e for e in (match.group(2) or "[]")[1:-1].split(",") if e.strip()]
    return f"{match.group(1)}[{','.join(sorted(set(extras) | {'export'}))}]{match.group(3) or ''}"


def _quote(text: str) -> str:
    return text if re.fullmatch(r"[A-Za-z0-9_.,/=+-]+", text) else "'" + text.replace("'", "'\\''") + "'"


__all__ = ["DeviceKind", "workflow"]
