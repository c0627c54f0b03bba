"""Run a GitHub Actions workflow that `edgedeploy ci github` wrote, on this machine, the way Actions would.

    python tools/run_workflow.py .github/workflows/edgedeploy-fleet.yml [--repo .] [--work DIR] [--host-packages DIR]

Why not nektos/act: it runs the `uses:` actions (checkout, setup-python, upload/download-artifact) by downloading
them from GitHub, which this machine cannot reach. So this script reads the YAML and runs every job for real:
jobs in `needs` order; the device job once per matrix combination (cross product, then `include` merged as GitHub
merges it); each job in its own fresh workspace (GITHUB_WORKSPACE) with RUNNER_TEMP, GITHUB_PATH, GITHUB_ENV and
GITHUB_STEP_SUMMARY files; `env:` of workflow, job and step; `if:`; each `run:` as `bash -e` in the workspace; a
failed step fails its job and skips the later steps whose condition needs success.

What is EMULATED (each step's log line says so):
- `runs-on`: any labels run on this host ("host runner standing in for [labels]").
- `actions/checkout`: copies the repository's tracked and untracked-but-not-ignored files into the workspace
  (after emptying it when `clean` is true, as checkout's git clean does).
- `actions/setup-python`: creates a venv from this machine's Python (the version asked for is printed, not
  fetched) and puts its bin first on PATH.
- `actions/upload-artifact` / `download-artifact`: a local folder per artifact name under WORK/artifacts, with
  `name`, `pattern` and `merge-multiple` as Actions applies them.
- Packages: a hosted runner downloads numpy/onnx/torch… from PyPI and a Jetson has TensorRT in its system
  packages; here `--host-packages` (default: the site-packages of the Python running this script, without any
  edgedeploy in it) is put on PYTHONPATH of every step, standing in for both, so `pip install .` installs edgedeploy
  itself from the checkout and finds its requirements already there.
- Secrets and the runner's own environment: `--secret NAME=FILE` gives `secrets.NAME` (a missing secret is the empty
  string, as in Actions); `--runner-env NAME=VALUE` stands in for a self-hosted runner's `.env` file (e.g. the
  device's EDGEDEPLOY_ALLOWED_SIGNERS).
Expressions: only the forms the generated workflow uses (`matrix.*`, `env.*`, `secrets.*`, `github.*`, `runner.*`,
`!cancelled()`, `always()`, `success()`, `failure()`, `hashFiles('…') != ''`, `&&`); anything else stops the run naming it, so an
expression this script does not understand can never pass silently.
Exit status: 0 when every job succeeded.
"""

from __future__ import annotations

import argparse
import fnmatch
import itertools
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


class Unsupported(Exception):
    """An expression or action this emulator does not implement."""


class Job:
    def __init__(self, job_id: str, spec: dict[str, Any], matrix: dict[str, Any], work: Path, workflow_env: dict,
                 secrets: dict[str, str] | None = None):
        self.id, self.spec, self.matrix = job_id, spec, matrix
        suffix = "-".join(str(v) for v in matrix.values() if not isinstance(v, (list, dict)) and str(v))
        self.label = f"{job_id}({suffix})" if suffix else job_id
        self.root = work / "runners" / re.sub(r"[^A-Za-z0-9._-]", "_", self.label)
        self.workspace, self.temp = self.root / "workspace", self.root / "temp"
        self.env: dict[str, str] = dict(workflow_env)
        self.secrets = dict(secrets or {})
        self.status = "success"

    def context(self) -> dict[str, Any]:
        return {"matrix": self.matrix, "env": self.env, "secrets": self.secrets,
                "github": {"workspace": str(self.workspace), "ref": "refs/heads/main", "run_id": "1"},
                "runner": {"temp": str(self.temp), "os": "Linux"}}


def evaluate(expression: str, ctx: dict[str, Any], status: str, workspace: Path) -> Any:
    """The value of one `${{ }}` body, for the forms listed in the module docstring."""
    expression = expression.strip()
    if "&&" in expression:
        return all(evaluate(part, ctx, status, workspace) for part in expression.split("&&"))
    if expression == "!cancelled()" or expression == "always()":
        return True
    if expression == "success()":
        return status == "success"
    if expression == "failure()":
        return status == "failure"
    match = re.fullmatch(r"hashFiles\('([^']*)'\)\s*!=\s*''", expression)
    if match:
        return any(p.is_file() for p in workspace.glob(match.group(1)))
    match = re.fullmatch(r"secrets\.([A-Za-z0-9_]+)", expression)
    if match:
        return ctx.get("secrets", {}).get(match.group(1), "")
    match = re.fullmatch(r"(matrix|env|github|runner)\.([A-Za-z0-9_-]+)", expression)
    if match:
        value = ctx[match.group(1)].get(match.group(2))
        if value is None:
            raise Unsupported(f"{expression} has no value here")
        return value
    raise Unsupported(f"expression {expression!r}")


def substitute(value: Any, ctx: dict[str, Any], status: str, workspace: Path) -> Any:
    """`value` with every `${{ }}` replaced; a string that is one whole expression keeps the value's type."""
    if isinstance(value, dict):
        return {k: substitute(v, ctx, status, workspace) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, ctx, status, workspace) for v in value]
    if not isinstance(value, str):
        return value
    whole = _EXPR.fullmatch(value.strip())
    if whole:
        return evaluate(whole.group(1), ctx, status, workspace)
    return _EXPR.sub(lambda m: str(evaluate(m.group(1), ctx, status, workspace)), value)


def condition(value: Any, ctx: dict[str, Any], status: str, workspace: Path) -> bool:
    if value is None:
        return status == "success"
    text = str(value).strip()
    whole = _EXPR.fullmatch(text)
    return bool(evaluate(whole.group(1) if whole else text, ctx, status, workspace))


def expand_matrix(strategy: dict[str, Any] | None) -> list[dict[str, Any]]:
    """GitHub's expansion: the cross product of the plain keys, then each `include` entry added to every
    combination whose original values it does not overwrite, or as a combination of its own."""
    if not strategy or "matrix" not in strategy:
        return [{}]
    matrix = dict(strategy["matrix"])
    include = matrix.pop("include", [])
    if matrix.pop("exclude", None):
        raise Unsupported("matrix exclude")
    keys = list(matrix)
    combos = [dict(zip(keys, values)) for values in itertools.product(*(matrix[k] for k in keys))]
    originals = [dict(c) for c in combos]
    for entry in include:
        matched = False
        for combo, original in zip(combos, originals):
            if all(original.get(k, v) == v for k, v in entry.items() if k in original):
                combo.update({k: v for k, v in entry.items() if k not in original})
                matched = True
        if not matched:
            combos.append(dict(entry))
            originals.append(dict(entry))
    return combos


def files_of(repo: Path) -> list[str]:
    done = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          capture_output=True, check=True)
    return [f for f in done.stdout.decode().split("\0") if f and (repo / f).is_file()]


def action(job: Job, step: dict[str, Any], with_: dict[str, Any], repo: Path, artifacts: Path, log) -> None:
    """One `uses:` step, emulated."""
    name = step["uses"].split("@")[0]
    if name == "actions/checkout":
        log(f"[emulated actions/checkout] copy {repo} (git's tracked and unignored files) into the workspace"
            + (", emptied first (clean: true)" if with_.get("clean", True) else ""))
        if with_.get("clean", True):
            for child in job.workspace.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        for rel in files_of(repo):
            (job.workspace / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, job.workspace / rel)
    elif name == "actions/setup-python":
        venv = job.root / "python"
        log(f"[emulated actions/setup-python] python-version {with_.get('python-version')}: a venv of this "
            f"machine's Python {sys.version_info.major}.{sys.version_info.minor} at {venv}")
        base = Path(getattr(sys, "_base_executable", sys.executable))
        subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
        job.env["PATH"] = f"{venv / 'bin'}:{job.env['PATH']}"
    elif name == "actions/upload-artifact":
        paths = [p.strip() for p in str(with_["path"]).splitlines() if p.strip()]
        if len(paths) != 1:
            raise Unsupported("upload-artifact with several paths")
        source = job.workspace / paths[0]
        target = artifacts / with_["name"]
        log(f"[emulated actions/upload-artifact] {paths[0]} → artifact {with_['name']!r}")
        if target.exists():
            raise RuntimeError(f"artifact {with_['name']!r} uploaded twice")
        if not source.exists() or (source.is_dir() and not any(source.rglob("*"))):
            if with_.get("if-no-files-found", "warn") == "error":
                raise RuntimeError(f"no files found at {paths[0]}")
            log(f"warning: no files found at {paths[0]}")
            return
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.mkdir(parents=True)
            shutil.copy2(source, target / source.name)
    elif name == "actions/download-artifact":
        dest = job.workspace / with_.get("path", ".")
        if "name" in with_:
            chosen = [artifacts / with_["name"]]
            if not chosen[0].is_dir():
                raise RuntimeError(f"no artifact {with_['name']!r}")
        else:
            chosen = sorted(p for p in artifacts.iterdir() if fnmatch.fnmatch(p.name, with_.get("pattern", "*")))
        log(f"[emulated actions/download-artifact] {[p.name for p in chosen]} → {with_.get('path', '.')}")
        for art in chosen:
            into = dest if ("name" in with_ or with_.get("merge-multiple")) else dest / art.name
            shutil.copytree(art, into, dirs_exist_ok=True)
    else:
        raise Unsupported(f"action {step['uses']}")


def run_job(job: Job, repo: Path, artifacts: Path, host_packages: Path, log,
            runner_env: dict[str, str] | None = None) -> str:
    spec = job.spec
    for folder in (job.workspace, job.temp):
        folder.mkdir(parents=True, exist_ok=True)
    files = {k: job.root / f"{k.lower()}.txt" for k in ("GITHUB_PATH", "GITHUB_ENV", "GITHUB_STEP_SUMMARY")}
    for f in files.values():
        f.touch()
    job.env.update(runner_env or {})  # the self-hosted runner's own environment (its .env file)
    job.env.update({"GITHUB_WORKSPACE": str(job.workspace), "RUNNER_TEMP": str(job.temp), "CI": "true",
                    "GITHUB_ACTIONS": "true", "HOME": os.environ.get("HOME", "/root"),
                    "PATH": "/usr/local/bin:/usr/bin:/bin", "PYTHONPATH": str(host_packages),
                    "PIP_NO_BUILD_ISOLATION": "0", "PIP_DISABLE_PIP_VERSION_CHECK": "1",  # build with host setuptools
                    **{k: str(v) for k, v in files.items()}})
    labels = substitute(spec.get("runs-on"), job.context(), "success", job.workspace)
    log(f"== job {job.label}: host runner standing in for {labels}")
    job.env.update({k: str(substitute(v, job.context(), "success", job.workspace))
                    for k, v in (spec.get("env") or {}).items()})
    for number, step in enumerate(spec["steps"], 1):
        title = step.get("name") or step.get("uses") or step["run"].splitlines()[0]
        if not condition(step.get("if"), job.context(), job.status, job.workspace):
            log(f"-- step {number} skipped: {title}")
            continue
        log(f"-- step {number}: {title}")
        started = time.perf_counter()
        try:
            if "uses" in step:
                action(job, step, substitute(step.get("with") or {}, job.context(), job.status, job.workspace),
                       repo, artifacts, log)
            else:
                env = {**job.env, **{k: str(substitute(v, job.context(), job.status, job.workspace))
                                     for k, v in (step.get("env") or {}).items()}}
                script = substitute(step["run"], job.context(), job.status, job.workspace)
                done = subprocess.run(["bash", "-e", "-c", script], cwd=job.workspace, env=env,
                                      stdout=sys.stdout, stderr=subprocess.STDOUT)
                if done.returncode != 0:
                    raise RuntimeError(f"exit code {done.returncode}")
        except Unsupported:
            raise
        except Exception as e:  # a step's failure fails its job, as in Actions
            log(f"   step failed: {e}")
            job.status = "failure"
        log(f"   ({time.perf_counter() - started:.1f} s)")
        for line in files["GITHUB_PATH"].read_text().splitlines():
            if line.strip() and line.strip() not in job.env["PATH"].split(":"):
                job.env["PATH"] = f"{line.strip()}:{job.env['PATH']}"
        files["GITHUB_PATH"].write_text("")
        for line in files["GITHUB_ENV"].read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                job.env[key] = value
        files["GITHUB_ENV"].write_text("")
    log(f"== job {job.label}: {job.status}")
    return job.status


def host_site_packages(work: Path) -> Path:
    """This Python's site-packages without edgedeploy (so each job's `pip install .` is what it imports)."""
    source = Path(sysconfig.get_paths()["purelib"])
    view = work / "host-packages"
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    for entry in source.iterdir():
        if not entry.name.lower().startswith(("edgedeploy", "__editable__")) and entry.suffix != ".pth":
            (view / entry.name).symlink_to(entry)
    return view


def run(workflow: Path, repo: Path, work: Path, host_packages: Path | None = None, log=print,
        secrets: dict[str, str] | None = None, runner_env: dict[str, str] | None = None) -> dict[str, str]:
    doc = yaml.safe_load(workflow.read_text())
    jobs: dict[str, Any] = doc["jobs"]
    artifacts = work / "artifacts"  # a new run's; the runners' workspaces persist, as on self-hosted runners
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    host_packages = host_packages or host_site_packages(work)
    results: dict[str, str] = {}
    pending = list(jobs)
    while pending:
        ready = [j for j in pending if all(n in results for n in _needs(jobs[j]))]
        if not ready:
            raise Unsupported(f"jobs whose needs never finish: {pending}")
        for job_id in ready:
            pending.remove(job_id)
            spec = jobs[job_id]
            failed_needs = any(results[n] != "success" for n in _needs(spec))
            if not condition(spec.get("if"), {"matrix": {}, "env": {}, "github": {}, "runner": {}},
                             "failure" if failed_needs else "success", work):
                log(f"== job {job_id}: skipped")
                results[job_id] = "skipped"
                continue
            statuses = [run_job(Job(job_id, spec, combo, work, dict(doc.get("env") or {}), secrets), repo,
                                artifacts, host_packages, log, runner_env)
                        for combo in expand_matrix(spec.get("strategy"))]
            results[job_id] = "success" if all(s == "success" for s in statuses) else "failure"
    return results


def _needs(spec: dict[str, Any]) -> list[str]:
    needs = spec.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workflow", type=Path)
    parser.add_argument("--repo", type=Path, default=Path("."), help="the repository the workflow runs in")
    parser.add_argument("--work", type=Path, help="where runners' workspaces and artifacts go (default: a temp dir)")
    parser.add_argument("--host-packages", type=Path, help="site-packages standing in for PyPI and the device's "
                                                           "system packages (default: this Python's, no edgedeploy)")
    parser.add_argument("--secret", action="append", default=[], metavar="NAME=FILE",
                        help="secrets.NAME, read from FILE (e.g. EDGEDEPLOY_SIGNING_KEY=~/.ssh/fleet-signing)")
    parser.add_argument("--runner-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable of the self-hosted runners (e.g. EDGEDEPLOY_ALLOWED_SIGNERS=FILE)")
    args = parser.parse_args()
    secrets = {name: Path(file).expanduser().read_text() for name, _, file in (s.partition("=") for s in args.secret)}
    runner_env = dict(v.partition("=")[::2] for v in args.runner_env)
    work = args.work or Path(tempfile.mkdtemp(prefix="edgedeploy-workflow-"))
    print(f"work folder: {work}")
    try:
        results = run(args.workflow, args.repo.resolve(), work, args.host_packages, secrets=secrets,
                      runner_env=runner_env)
    except Unsupported as e:
        print(f"run_workflow: not emulated: {e}", file=sys.stderr)
        return 2
    print("\n".join(f"{job}: {status}" for job, status in results.items()))
    return 0 if all(s == "success" for s in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
