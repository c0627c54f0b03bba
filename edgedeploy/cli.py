"""The `edgedeploy` command line: a thin Typer layer over the pipeline, with rich progress per stage.

Every expected failure is one line on stderr and exit code 2 (usage) or 1 (failure); `--debug` (accepted by every
command, before or after its name; or EDGEDEPLOY_DEBUG=1) adds the traceback. A new command takes
`debug: bool = DEBUG` like the others (tests/test_cli.py checks that every command accepts it).

Output: one console on stderr that never wraps a line (CI logs are not terminals, and a figure split at column 80
is unreadable); the stage spinner is rich's global console, so the progress bars NNCF draws during INT8
calibration nest under it instead of fighting it for the terminal.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Optional, get_args

import rich
import typer
from rich.markup import escape
from rich.text import Text

from edgedeploy.errors import EdgeDeployError, UsageError, strip_ansi

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Take a trained model to a verified TensorRT / OpenVINO / ONNX Runtime artifact.",
                  epilog="Start with: edgedeploy build   (the bundled demo detector, OpenVINO fp32). "
                         "Exit codes: 0 pass, 1 a check or stage failed, 2 usage error.")
rich.reconfigure(stderr=True, soft_wrap=True)  # NNCF's progress bars use the global console too (see above)
console = rich.get_console()
_debug = {"on": os.environ.get("EDGEDEPLOY_DEBUG", "") not in ("", "0")}


def _set_debug(value: bool) -> bool:
    _debug["on"] = _debug["on"] or bool(value)
    return value


DEBUG = typer.Option(False, "--debug", callback=_set_debug, is_eager=True, metavar="",
                     help="show tracebacks and tool logs on failure (also: EDGEDEPLOY_DEBUG=1)")
_DEFAULT_OUT = "edgedeploy-out/NAME-TARGET-PRECISION"


@app.callback()
def _options(debug: bool = DEBUG) -> None:
    """Global options (every command accepts them too)."""


class _RichStages:
    """Shows a spinner while a stage runs and one line with its wall time when it ends."""

    def __init__(self) -> None:
        self._status = None

    def start(self, stage: str) -> None:
        self._status = console.status(f"[bold]{stage}[/]…")
        self._status.start()

    def done(self, stage: str, seconds: float, summary: str) -> None:
        if self._status is not None:
            self._status.stop()
        console.print(f"[green]✓[/] {stage:<9} {seconds:6.1f} s  {escape(summary)}", highlight=False)

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()


@app.command(epilog="\b\nExample: edgedeploy build mynet.yaml --target openvino --precision fp16 --out out/mynet-fp16")
def build(
    config: Optional[Path] = typer.Argument(None, metavar="CONFIG", show_default="the bundled demo detector",
                                            help="YAML build spec (`edgedeploy docs readme`: 'Your own model'), or a bundle "
                                                 "folder (edgedeploy bundle)"),
    target: Optional[str] = typer.Option(
        None, "--target", "-t", metavar="TARGET", show_default="the config's, else openvino",
        help="openvino | onnxruntime | trt (trt needs TensorRT: JetPack's on a Jetson, the `tensorrt` extra on "
             "x86_64 with an NVIDIA GPU; `edgedeploy docs tensorrt`)"),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", metavar="PRECISION",
                                            show_default="the config's, else fp32",
                                            help="fp32 | fp16 | int8 | auto (build the candidates this machine "
                                                 "runs, keep the fastest within its budget)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", show_default=_DEFAULT_OUT,
                                       help="output folder, replaced as a whole when the build completes"),
    strict: bool = typer.Option(False, "--strict", metavar="",
                                help="fail on every warning too (precision not as requested, accuracy not "
                                     "measured, too few calibration samples, unstable latency, int8 slower than "
                                     "float): for CI"),
    trust_code: bool = typer.Option(False, "--trust-code", metavar="",
                                    help="allow loading a pickled checkpoint (runs code from it)"),
    no_cache: bool = typer.Option(False, "--no-cache", metavar="",
                                  help="re-run export and optimize instead of reusing their results from the stage "
                                       "cache (edgedeploy cache ls)"),
    static_batch: Optional[int] = typer.Option(None, "--static-batch", min=1, metavar="N", show_default="dynamic",
                                               help="build a static-shape artifact for this fixed deployment batch"),
    allowed_signers: Optional[Path] = typer.Option(None, "--allowed-signers", metavar="FILE",
                                                   show_default="$EDGEDEPLOY_ALLOWED_SIGNERS",
                                                   help="BUNDLE: check its signature against this OpenSSH "
                                                        "allowed_signers file before reading it (then required)"),
    require_signature: bool = typer.Option(False, "--require-signature", metavar="",
                                           help="BUNDLE: refuse it unless it is signed by an allowed signer"),
    data: Optional[Path] = typer.Option(None, "--data", metavar="PATH",
                                        help="BUNDLE: the validation dataset on this device, when the bundle's "
                                             "reference covers more samples than its tensor sample (checked against "
                                             "the content hash it names)"),
    debug: bool = DEBUG,
) -> None:
    """Build and validate a deployable artifact.

    Export (PyTorch → ONNX), optimize, precision (fp16 / calibrated int8), build for the target, then validate
    against the reference; writes report.json / .md / .html. Exit 0 pass, 1 a check or stage failed, 2 usage error."""
    from edgedeploy import pipeline
    from edgedeploy.bundle.manifest import is_bundle
    from edgedeploy.config import Precision, Target, demo_spec_path, load_spec
    from edgedeploy.outfolder import OutputFolder
    from edgedeploy.stagecache import StageCache

    if config is not None and is_bundle(config):
        return _build_bundle(config, target, precision, out, strict, allowed_signers, require_signature, data)
    if allowed_signers is not None or require_signature or data is not None:
        raise UsageError("--allowed-signers, --require-signature and --data apply to a bundle, not to a build spec",
                         where=str(config or "the demo spec"), fix="pass a bundle folder (edgedeploy bundle --sign)")
    spec = load_spec(config if config is not None else demo_spec_path())
    auto = precision == "auto"
    for flag, value, allowed in (("--target", target, get_args(Target)),
                                 ("--precision", precision, (*get_args(Precision), "auto"))):
        if value is not None and value not in allowed:
            raise UsageError(f"invalid {flag} {value!r}", fix=f"use one of: {', '.join(allowed)}")
    updates = {"target": target, "precision": None if auto else precision, "static_batch": static_batch}
    spec = spec.model_copy(update={k: v for k, v in updates.items() if v})
    if strict:
        spec = spec.model_copy(update={"validation": spec.validation.model_copy(update={"strict": True})})
    chosen = "auto" if auto else spec.precision
    out = OutputFolder(out or Path("edgedeploy-out") / f"{spec.name}-{spec.target}-{chosen}").check()
    if not auto:
        pipeline.check_request(spec)
    console.print(f"[bold]edgedeploy build[/] {escape(spec.name)} → {spec.target} {chosen} in {escape(str(out))}",
                  highlight=False)
    stages = _RichStages()
    cache = None if no_cache else StageCache()
    try:
        if auto:
            from edgedeploy.auto import build_auto

            report = build_auto(spec, out, trust_code=trust_code, listener=stages, cache=cache)
            console.print(f"precision auto chose [bold]{escape(report['auto']['chosen'])}[/]: "
                          + escape("; ".join(f"{r['name']} {r['why']}" for r in report["auto"]["candidates"])),
                          highlight=False)
        else:
            report = pipeline.build(spec, out, trust_code=trust_code, listener=stages, cache=cache)
    finally:
        stages.stop()
    _finish(report, out)


def _build_bundle(bundle: Path, target: Optional[str], precision: Optional[str], out: Optional[Path],
                  strict: bool, allowed_signers: Optional[Path], require_signature: bool,
                  data: Optional[Path] = None) -> None:
    """`build BUNDLE`: what a device runs, with no PyTorch (edgedeploy.bundle.build)."""
    from edgedeploy.bundle.build import build_from_bundle
    from edgedeploy.bundle.manifest import read_manifest
    from edgedeploy.bundle.signature import allowed_signers as signers_file
    from edgedeploy.outfolder import OutputFolder

    signers = signers_file(allowed_signers)
    default = read_manifest(bundle, signers, require_signature)[0]["default"]  # the files are checked by the build
    target, precision = target or default["target"], precision or default["precision"]
    out = OutputFolder(out or Path("edgedeploy-out") / f"{bundle.name}-{target}-{precision}").check()
    console.print(f"[bold]edgedeploy build[/] bundle {escape(str(bundle))} → {target} {precision} in "
                  f"{escape(str(out))}", highlight=False)
    stages = _RichStages()
    try:
        report = build_from_bundle(bundle, out, target=target, precision=precision, strict=strict, listener=stages,
                                   signers=signers, require_signature=require_signature, data=data)
    finally:
        stages.stop()
    _finish(report, out)


@app.command(epilog="\b\nExample: edgedeploy bundle mynet.yaml --out out/mynet-bundle -p fp16 -p int8   "
                    "(then on the device: edgedeploy build out/mynet-bundle --target trt -p int8)")
def bundle(
    config: Optional[Path] = typer.Argument(None, metavar="CONFIG", show_default="the bundled demo detector",
                                            help="YAML build spec"),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="the bundle folder (replaced as a whole)"),
    precision: list[str] = typer.Option([], "--precision", "-p", metavar="PRECISION",
                                        show_default="fp32, fp16, and int8 when the spec has calibration data",
                                        help="fp32 | fp16 | int8 (repeatable)"),
    trust_code: bool = typer.Option(False, "--trust-code", metavar="",
                                    help="allow loading a pickled checkpoint (runs code from it)"),
    no_cache: bool = typer.Option(False, "--no-cache", metavar="",
                                  help="re-run export and optimize instead of reusing their results from the stage "
                                       "cache (edgedeploy cache ls)"),
    sign: Optional[Path] = typer.Option(None, "--sign", metavar="KEY", help="sign bundle.json with this OpenSSH "
                                        "private key (bundle.json.sig; devices check it with --allowed-signers)"),
    debug: bool = DEBUG,
) -> None:
    """Make a bundle a device builds from without PyTorch.

    deploy.onnx and its fp16 / Q/DQ variants, the reference inputs and outputs, the calibration samples, the spec
    and a manifest with hashes: `edgedeploy build BUNDLE` and `edgedeploy validate` on the device need nothing else."""
    from edgedeploy.bundle.make import make_bundle
    from edgedeploy.config import Precision, demo_spec_path, load_spec
    from edgedeploy.stagecache import StageCache

    bad = [p for p in precision if p not in get_args(Precision)]
    if bad:
        raise UsageError(f"invalid --precision {bad[0]!r}", fix=f"use one of: {', '.join(get_args(Precision))}")
    if sign is not None:  # refused before any work
        from edgedeploy.fileio import open_input

        with open_input(sign, "signing key", fix="pass the private key file (ssh-keygen -t ed25519 -f KEY)"):
            pass
    spec = load_spec(config if config is not None else demo_spec_path())
    console.print(f"[bold]edgedeploy bundle[/] {escape(spec.name)} → {escape(str(out))}", highlight=False)
    stages = _RichStages()
    try:
        manifest = make_bundle(spec, out, precision or None, trust_code=trust_code, listener=stages,
                               cache=None if no_cache else StageCache(), sign_key=sign)
    finally:
        stages.stop()
    size = sum(f["size"] for f in manifest["files"].values())
    console.print(f"[green]✓[/] {escape(str(out))}: {', '.join(manifest['precisions'])}; "
                  f"{len(manifest['files'])} files, {size / 1e6:.1f} MB; on the device: edgedeploy build "
                  f"{escape(str(out))} --target trt|openvino|onnxruntime", highlight=False)


@app.command(epilog="\b\nExample: edgedeploy remote nvidia@orin.local build out/mynet-bundle --target trt -p int8 "
                    "--venv edgedeploy-venv")
def remote(
    device: str = typer.Argument(..., metavar="DEVICE", help="USER@HOST[:PORT], or a host alias from your "
                                                             "~/.ssh/config"),
    action: str = typer.Argument(..., metavar="ACTION", help="build | validate"),
    path: Path = typer.Argument(..., metavar="PATH", help="build: a bundle (edgedeploy bundle); validate: a build "
                                                          "folder"),
    target: Optional[str] = typer.Option(None, "--target", "-t", metavar="TARGET", show_default="the bundle's",
                                         help="build: openvino | onnxruntime | trt"),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", metavar="PRECISION",
                                            show_default="the bundle's", help="build: fp32 | fp16 | int8"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR",
                                       show_default="build: edgedeploy-out/BUNDLE-TARGET-HOST; validate: PATH-validate",
                                       help="local folder the device's output is fetched into"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", metavar="REPORT_JSON",
                                            help="validate: a report.json to compare against"),
    config: Optional[Path] = typer.Option(None, "--config", metavar="YAML", help="validate: YAML overriding thresholds"),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE", help="validate: write JUnit XML here"),
    venv: Optional[str] = typer.Option(None, "--venv", metavar="DIR", show_default="edgedeploy on the device's PATH",
                                       help="the virtual environment on the device that has edgedeploy (absolute, or "
                                            "relative to the home folder)"),
    remote_dir: str = typer.Option(".edgedeploy/remote", "--remote-dir", metavar="DIR",
                                   help="work folder on the device"),
    ssh_config: Optional[Path] = typer.Option(None, "--ssh-config", "-F", metavar="FILE",
                                              show_default="~/.ssh/config", help="ssh_config to use"),
    ssh_option: list[str] = typer.Option([], "--ssh-option", metavar="KEY=VALUE",
                                         help="an ssh -o option, e.g. ProxyJump=gw (repeatable)"),
    bwlimit: Optional[int] = typer.Option(None, "--bwlimit", metavar="KBIT_S", show_default="no limit",
                                          help="limit copies to this many Kbit/s (scp -l)"),
    keep_remote: bool = typer.Option(False, "--keep-remote", metavar="", help="keep the run's folder on the device"),
    max_fetch_mb: int = typer.Option(4096, "--max-fetch-mb", min=1, metavar="MB",
                                     help="refuse to fetch an output folder larger than this"),
    allowed_signers: Optional[str] = typer.Option(None, "--allowed-signers", metavar="FILE",
                                                  help="build: the device checks the bundle's signature against this "
                                                       "allowed_signers file (a path on the device)"),
    require_signature: bool = typer.Option(False, "--require-signature", metavar="",
                                           help="build: the device refuses an unsigned bundle"),
    debug: bool = DEBUG,
) -> None:
    """Build or validate on a device over SSH.

    Copies the bundle (build) or build folder (validate) there, runs edgedeploy in --venv showing its progress,
    fetches the output folder back (whole, or not at all) and exits with the device's exit code."""
    import shutil

    from edgedeploy.outfolder import report_path
    from edgedeploy.remote.run import RemoteJob
    from edgedeploy.remote.ssh import Destination, Ssh

    if action not in ("build", "validate"):
        raise UsageError(f"invalid action {action!r}", fix="use build or validate")
    wrong = [flag for flag, value, used_by in (
        ("--target", target, "build"), ("--precision", precision, "build"), ("--baseline", baseline, "validate"),
        ("--config", config, "validate"), ("--junit", junit, "validate"),
        ("--allowed-signers", allowed_signers, "build"), ("--require-signature", require_signature or None, "build"))
        if value is not None and used_by != action]
    if wrong:
        raise UsageError(f"{wrong[0]} does not apply to `remote {action}`")
    dest = Destination.parse(device)
    job = RemoteJob(Ssh(dest, ssh_config, list(ssh_option), bwlimit), venv=venv, remote_dir=remote_dir,
                    keep_remote=keep_remote, columns=shutil.get_terminal_size((120, 24)).columns,
                    max_fetch_bytes=max_fetch_mb << 20,
                    say=lambda line: console.print(f"[bold]{escape(str(dest))}[/] {escape(line)}", highlight=False,
                                                   soft_wrap=True))
    if action == "build":
        args = [*(["--target", target] if target else []), *(["--precision", precision] if precision else []),
                *(["--allowed-signers", allowed_signers] if allowed_signers else []),
                *(["--require-signature"] if require_signature else [])]
        out = out or Path("edgedeploy-out") / f"{path.name}-{target or 'default'}-{dest.host.split('@')[-1]}"
        code = job.build(path, out, args)
    else:
        files = {flag: f for flag, f in (("--baseline", baseline), ("--config", config)) if f is not None}
        for f in files.values():
            if not f.is_file():
                raise UsageError("file not found", where=str(f))
        out = report_path(path, out, "validate")
        code = job.validate(path, out, [], files, junit)
    console.print(f"[bold]{escape(str(dest))}[/] exit code {code}; "
                  + ", ".join(f"{k} {v:.1f} s" for k, v in job.seconds.items()) + f" → {escape(str(out))}",
                  highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command(epilog="\b\nExample: edgedeploy validate out/demo-ov --baseline tests/baselines/demo-openvino-fp32.json "
                     "--junit out/junit.xml --strict")
def validate(
    artifact_dir: Path = typer.Argument(..., metavar="ARTIFACT_DIR", help="a folder written by `edgedeploy build` "
                                        "(manifest.json, reference.npz)"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", metavar="REPORT_JSON",
                                            help="a committed report.json to compare against (accuracy; latency on "
                                                 "the machine it was timed on)"),
    junit: Optional[Path] = typer.Option(None, "--junit", metavar="FILE",
                                         help="write JUnit XML here (one testcase per check)"),
    config: Optional[Path] = typer.Option(
        None, "--config", metavar="YAML", help="thresholds / validation / regression merged over the build's "
                                               "(or a full build spec)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR", show_default="ARTIFACT_DIR-validate",
                                       help="report folder, replaced as a whole"),
    strict: bool = typer.Option(False, "--strict", metavar="", help="fail on every warning too (CI)"),
    accept_model_change: bool = typer.Option(False, "--accept-model-change", metavar="",
                                             help="compare with a baseline of another model, task, output set or "
                                                  "data set (a deliberate re-baseline; recorded in the report)"),
    debug: bool = DEBUG,
) -> None:
    """Re-check a built artifact (CI gate).

    Re-runs it on the inputs stored in reference.npz (no PyTorch needed), checks its thresholds, its files'
    hashes and a baseline; writes report.json / .md / .html and JUnit. Exit 0 pass, 1 a check failed, 2 usage error."""
    from edgedeploy.outfolder import report_path
    from edgedeploy.revalidate import validate_artifact

    with console.status("[bold]validate[/]…"):
        report = validate_artifact(artifact_dir, baseline=baseline, config=config, out_dir=out, junit=junit,
                                   accept_model_change=accept_model_change,
                                   strict=strict)
    out = report_path(artifact_dir, out, "validate")
    for c in report["checks"]:
        mark = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "skip": "[yellow]-[/]"}[c["status"]]
        if c["status"] != "pass":
            console.print(f"{mark} {escape(c['message'])}", highlight=False)
    _finish(report, out)


@app.command(epilog="\b\nExample: edgedeploy optimize raw.onnx --output deploy.onnx --drop-output 'aux_*' "
                    "--input-shape images:1x3x640x640 --report optimize.json --strict")
def optimize(
    model: Path = typer.Argument(..., metavar="MODEL_ONNX", help="the ONNX model to optimize"),
    output: Path = typer.Option(..., "--output", "-o", metavar="FILE", help="where to write the optimized ONNX"),
    keep_output: list[str] = typer.Option([], "--keep-output", metavar="NAME", show_default="all outputs",
                                          help="keep only these outputs (repeatable)"),
    drop_output: list[str] = typer.Option([], "--drop-output", metavar="PATTERN", show_default="none",
                                          help="drop outputs by name or glob, e.g. 'aux*' (repeatable)"),
    simplifier: str = typer.Option("auto", "--simplifier", metavar="NAME",
                                   help="auto | onnxsim | onnxslim | none"),
    input_shape: list[str] = typer.Option(
        [], "--input-shape", metavar="NAME:1x3x48x192", show_default="from --inputs, else chosen and reported",
        help="the shape verification runs an input at, for its dynamic dims (repeatable)"),
    inputs: Optional[Path] = typer.Option(
        None, "--inputs", metavar="NPZ", show_default="seeded random inputs",
        help="representative inputs: an .npz with one array per model input (by name; the first 8 samples are used)"),
    strict: bool = typer.Option(False, "--strict", metavar="",
                                help="exit 1 when any pass is not applied (rolled back or failed)"),
    report: Optional[Path] = typer.Option(None, "--report", metavar="FILE", show_default="not written",
                                          help="write the verification report (JSON) here"),
    debug: bool = DEBUG,
) -> None:
    """Optimize an ONNX graph, every pass verified.

    Folds BN and per-channel affines, merges RepConv branches, prunes outputs, simplifies; a pass that changes the
    outputs is rolled back and reported."""
    from edgedeploy import fileio
    from edgedeploy.graph.optimize import OptimizeSettings, optimize_file
    from edgedeploy.outfolder import output_file
    from edgedeploy.shapes import load_input_arrays, parse_input_shape

    if simplifier not in ("auto", "onnxsim", "onnxslim", "none"):
        raise UsageError(f"invalid --simplifier {simplifier!r}", fix="use one of: auto, onnxsim, onnxslim, none")
    with fileio.open_input(model, "ONNX model"):  # a FIFO or a device is refused before ONNX reads from it
        pass
    output = output_file(output, "--output")
    report = output_file(report, "--report") if report is not None else None
    shapes = dict(parse_input_shape(text) for text in input_shape)
    real = load_input_arrays(inputs) if inputs is not None else None
    settings = OptimizeSettings(keep_outputs=keep_output or None, drop_outputs=drop_output, simplifier=simplifier,
                                input_shapes=shapes)
    with console.status("[bold]optimize[/]…"):
        result = optimize_file(model, output, settings, real_inputs=real)
    console.print(result.summary(), highlight=False, markup=False)
    if report is not None:
        fileio.write_json(report, result.to_dict())
    for line in result.warnings():
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)
    skipped = [p.name for p in result.not_applied()]
    note = f"; not applied: {', '.join(skipped)}" + ("" if report else " (--report has every figure)") \
        if skipped else ""
    mark = "[yellow]![/]" if skipped else "[green]✓[/]"
    console.print(f"{mark} " + escape(f"{output}: {sum(result.nodes_before.values())} → "
                                      f"{sum(result.nodes_after.values())} nodes, outputs "
                                      f"{', '.join(result.outputs)}{note}"), highlight=False)
    if strict and skipped:
        raise EdgeDeployError(f"--strict: {len(skipped)} pass(es) not applied: {', '.join(skipped)}",
                              where=str(report or output), fix="see the warnings above; give --input-shape or "
                                                               "--inputs when the inputs could not check a pass")


debug_app = typer.Typer(no_args_is_help=True, help="Find what loses accuracy in a built artifact.")
app.add_typer(debug_app, name="debug")


@debug_app.callback()
def _debug_options(debug: bool = DEBUG) -> None:
    """Find what loses accuracy in a built artifact."""


@debug_app.command("precision", epilog="\b\nExample: edgedeploy debug precision out/demo-ov8 --search "
                                       "--max-map50-drop 0.001 --rebuild out/demo-ov8-fixed")
def debug_precision(
    artifact_dir: Path = typer.Argument(..., metavar="ARTIFACT_DIR",
                                        help="a folder written by `edgedeploy build --precision int8`"),
    samples: int = typer.Option(32, "--samples", metavar="N",
                                help="validation samples the per-layer errors are measured on"),
    search: bool = typer.Option(False, "--search", metavar="", help="find the fewest worst layers to keep in float "
                                                                    "so the int8 budget holds (each trial requantizes)"),
    max_layers: int = typer.Option(16, "--max-layers", metavar="N", help="--search keeps at most this many layers "
                                                                         "in float"),
    max_map50_drop: Optional[float] = typer.Option(None, "--max-map50-drop", metavar="DROP",
                                                   show_default="the build's int8 budget",
                                                   help="budget override (mAP units, e.g. 0.005)"),
    max_top1_drop: Optional[float] = typer.Option(None, "--max-top1-drop", metavar="DROP",
                                                  show_default="the build's int8 budget",
                                                  help="budget override (accuracy units, e.g. 0.01)"),
    rebuild: Optional[Path] = typer.Option(None, "--rebuild", metavar="DIR", help="with --search: build the found "
                                                                                  "configuration into this folder"),
    top: int = typer.Option(10, "--top", metavar="N", help="layers listed here (all are in the report)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", metavar="DIR",
                                       show_default="ARTIFACT_DIR-debug-precision", help="report folder"),
    target: Optional[str] = typer.Option(None, "--target", metavar="trt",
                                         show_default="the Q/DQ graph or IR on the CPU",
                                         help="trt: analyse the TensorRT engine itself, every layer output marked "
                                              "(runs on the device)"),
    debug: bool = DEBUG,
) -> None:
    """Rank the layers that lose INT8 accuracy.

    Compares every intermediate tensor of the quantized graph with the float graph and ranks the layers by the
    error each adds; with --search, keeps the worst in float until the budget holds (exit 1 when no such set is
    found)."""
    from edgedeploy.outfolder import OutputFolder, report_path
    from edgedeploy import precision_debug

    if rebuild is not None and not search:
        raise UsageError("--rebuild needs --search (it builds what the search found)")
    if rebuild is not None:  # refused now, not after the search
        rebuild = OutputFolder(rebuild, flag="--rebuild").check()
    report_dir = report_path(artifact_dir, out, "debug-precision")
    with console.status("[bold]debug precision[/]…") as status:
        report = precision_debug.debug_precision(
            artifact_dir, report_dir, samples=samples, do_search=search, max_layers=max_layers,
            budget_overrides={"max_map50_drop": max_map50_drop, "max_top1_drop": max_top1_drop}, target=target,
            progress=lambda line: (status.update(f"[bold]debug precision[/] {escape(line)}"),
                                   console.print(f"  {escape(line)}", highlight=False)))
    by_name = {lay["layer"]: lay for lay in report["layers"]}
    console.print(f"worst {min(top, len(report['ranking']))} of {len(report['ranking'])} quantized layers "
                  f"(local rel-L2 / cumulative rel-L2):")
    for name in report["ranking"][:top]:
        lay = by_name[name]
        console.print(f"  {lay['local_rel_l2']:.4f} / {lay['rel_l2']:.4f}  {escape(name)} ({lay['op_type']})",
                      highlight=False)
    result = report.get("result")
    if result is None:
        console.print(f"→ {escape(str(report_dir / 'report.md'))}", highlight=False)
        return
    if not result["passed"]:
        raise EdgeDeployError(f"the int8 budget does not hold with up to {max_layers} worst layers in float",
                              where=str(report_dir / "report.md"),
                              fix="raise --max-layers, or check the calibration data and preprocessing")
    console.print(f"[green]✓[/] {len(result['kept_float'])} layer(s) in float meet the budget → "
                  f"{escape(str(report_dir / 'keep-float.yaml'))}", highlight=False)
    if rebuild is not None:
        stages = _RichStages()
        try:
            built = precision_debug.rebuild(artifact_dir, result["kept_float"], rebuild, listener=stages,
                                            trt_major=report.get("tensorrt_major"))
        finally:
            stages.stop()
        _finish(built, rebuild)


ci_app = typer.Typer(no_args_is_help=True, help="Write CI workflows that build and validate on many devices.")
app.add_typer(ci_app, name="ci")


@ci_app.callback()
def _ci_options(debug: bool = DEBUG) -> None:
    """Write CI workflows that build and validate on many devices."""


@ci_app.command("github", epilog="\b\nExample: edgedeploy ci github mynet.yaml -d orin-nano=self-hosted,jetson,"
                                 "orin-nano:trt -d xeon=self-hosted,x64:openvino -p fp16 -p int8")
def ci_github(
    config: Optional[str] = typer.Argument(None, metavar="CONFIG", show_default="the bundled demo",
                                           help="the build spec's path in your repository"),
    device: list[str] = typer.Option(..., "--device", "-d", metavar="NAME=LABEL,LABEL[:TARGET[:CUDA_MAJOR]]",
                                     help="one per kind of device, e.g. orin-nano=self-hosted,jetson,orin-nano:trt "
                                          "(trt: CUDA major 12 unless given, e.g. thor=self-hosted,thor:trt:13; "
                                          "repeatable)"),
    precision: list[str] = typer.Option([], "--precision", "-p", metavar="PRECISION", show_default="fp32, fp16",
                                        help="fp32 | fp16 | int8 (repeatable)"),
    out: Path = typer.Option(Path(".github/workflows/edgedeploy-fleet.yml"), "--out", "-o", metavar="FILE",
                             help="the workflow file to write"),
    install: Optional[str] = typer.Option(None, "--install", metavar="REQUIREMENT",
                                          show_default=". (the repository the workflow runs in)",
                                          help="pip requirement for edgedeploy on the runners"),
    module_root: str = typer.Option(".", "--module-root", metavar="DIR",
                                    help="the repository folder your model's package is imported from"),
    timeout: int = typer.Option(120, "--timeout", metavar="MINUTES", help="minutes each device job may take"),
    unsigned: bool = typer.Option(False, "--unsigned", metavar="",
                                  help="devices build bundles nobody signed (not recommended: anyone who can replace "
                                       "the artifact then chooses what the fleet runs)"),
    debug: bool = DEBUG,
) -> None:
    """Write a GitHub Actions fleet workflow.

    The bundle is made on a hosted runner and signed with the repository secret EDGEDEPLOY_SIGNING_KEY, then built
    and validated on a self-hosted runner of each device kind × precision, which refuses a bundle no key in its
    allowed_signers file signed (`edgedeploy docs bundles`); a summary job puts one fleet table in the run's
    summary."""
    from edgedeploy import fileio
    from edgedeploy.config import Precision
    from edgedeploy.fleet.github import DeviceKind, workflow

    bad = [p for p in precision if p not in get_args(Precision)]
    if bad:
        raise UsageError(f"invalid --precision {bad[0]!r}", fix=f"use one of: {', '.join(get_args(Precision))}")
    kinds = [DeviceKind.parse(d) for d in device]
    fileio.write_text(out, workflow(kinds, precision or ["fp32", "fp16"], config, install, device_timeout=timeout,
                                    module_root=module_root, signed=not unsigned))
    console.print(f"[green]✓[/] {escape(str(out))}: {len(kinds)} device kind(s) x {len(precision) or 2} "
                  f"precision(s); register a self-hosted runner with each kind's labels", highlight=False)


report_app = typer.Typer(no_args_is_help=True, help="Work with report.json files.")
app.add_typer(report_app, name="report")


@report_app.callback()
def _report_options(debug: bool = DEBUG) -> None:
    """Work with report.json files."""


@report_app.command("merge", epilog="\b\nExample: edgedeploy report merge out/*/report.json --out out/fleet")
def report_merge(
    reports: list[Path] = typer.Argument(..., metavar="REPORT_JSON...", help="report.json files, e.g. "
                                                                             "out/*/report.json"),
    out: Path = typer.Option(Path("fleet"), "--out", "-o", metavar="DIR",
                             help="folder for fleet.md, fleet.html and fleet.json"),
    debug: bool = DEBUG,
) -> None:
    """Merge reports into one fleet table.

    Device × precision: accuracy, latency, pass/fail, in Markdown and HTML; exit 1 when any report failed."""
    from edgedeploy.fleet.merge import merge

    rows = merge(reports, out)
    failed = [r["run"] for r in rows if not r["passed"]]
    console.print(f"{len(rows) - len(failed)} of {len(rows)} runs passed → {escape(str(out / 'fleet.md'))}",
                  highlight=False, soft_wrap=True)
    if failed:
        raise EdgeDeployError(f"failed runs: {', '.join(failed)}", where=str(out / "fleet.md"),
                              fix="the table names each run's failed checks")


def _finish(report: dict, out: Path) -> None:
    """Print the verdict line (with its warnings) and each warning; a failed check makes the command exit 1,
    naming the checks."""
    _print_summary(report, out)
    if not report["passed"]:
        failed = [c for c in report["checks"] if not c["passed"]]
        raise EdgeDeployError(f"checks failed: {', '.join(c['name'] for c in failed)} ({failed[0]['message']})",
                              where=str(out / "report.md"), fix="the report has every figure and its limit")


def _print_summary(report: dict, out: Path) -> None:
    task = report.get("task")
    worst = max(report["tensors"].items(), key=lambda kv: kv[1]["rel_l2"])
    parts = [f"rel-L2 {worst[1]['rel_l2']:.2e} ({worst[0]})"]
    if task and "map50" in task:
        parts.append(f"mAP@0.5 {task['map50']:.4f} (reference {task['reference_map50']:.4f})")
    elif task and task.get("kind") == "classification":
        parts.append(f"top-1 agreement {task['top1_agreement']:.4f}"
                     + (f", top-1 {task['top1']:.4f} (reference {task['reference_top1']:.4f})" if "top1" in task else ""))
    from edgedeploy.validate.latency import headline

    parts += [f"batch {t['batch']}: {headline(t)}" for t in report["latency"]]
    counts = {k: sum(c.get("status") == k for c in report["checks"]) for k in ("pass", "fail", "skip")}
    parts.append(f"checks {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    warnings = [w for w in report.get("warnings", []) if isinstance(w, dict)]
    verdict = "[green]PASS[/]" if report["passed"] else "[red]FAIL[/]"
    if warnings:
        titles = "; ".join(dict.fromkeys(w["title"] for w in warnings))
        verdict += (f" [yellow]with {len(warnings)} warning{'s' * (len(warnings) > 1)}[/] ({escape(titles)}"
                    f"{', failed under --strict' if report.get('strict') else ''})")
    console.print(f"{verdict}: {escape('; '.join(parts))}; total {report['wall_seconds']:.1f} s → "
                  f"{escape(str(out / 'report.md'))}", highlight=False)
    for w in warnings:
        console.print(f"[yellow]warning:[/] {escape(w['message'])}", highlight=False)


cache_app = typer.Typer(no_args_is_help=True, help="The stage cache: export and optimize results reused by content "
                                                   "across builds ($XDG_CACHE_HOME/edgedeploy).")
app.add_typer(cache_app, name="cache")


@cache_app.callback()
def _cache_options(debug: bool = DEBUG) -> None:
    """The stage cache: export and optimize results reused by content across builds ($XDG_CACHE_HOME/edgedeploy)."""


@cache_app.command("ls", epilog="\b\nExample: edgedeploy cache ls")
def cache_ls(debug: bool = DEBUG) -> None:
    """List the cached stage results: stage, key, size, age, what each was made from."""
    from edgedeploy.stagecache import StageCache

    cache = StageCache()
    entries = cache.entries()
    for e in entries:
        typer.echo(f"{e['stage']:<9} {e['key']}  {e['bytes'] / 2**20:8.1f} MiB  {e['age_s'] / 3600:7.1f} h  {e['from']}")
    total = sum(e["bytes"] for e in entries)
    typer.echo(f"{len(entries)} entries, {total / 2**20:.1f} MiB in {cache.root / 'stages'}")


@cache_app.command("clear", epilog="\b\nExample: edgedeploy cache clear --stage export")
def cache_clear(
    stage: Optional[str] = typer.Option(None, "--stage", metavar="STAGE", show_default="every stage",
                                        help="only this stage's entries: export | optimize"),
    debug: bool = DEBUG,
) -> None:
    """Delete cached stage results (all, or one stage's); the next build re-runs those stages."""
    from edgedeploy.stagecache import STAGES, StageCache

    if stage is not None and stage not in STAGES:
        raise UsageError(f"invalid --stage {stage!r}", fix=f"use one of: {', '.join(STAGES)}")
    count, size = StageCache().clear(stage)
    typer.echo(f"removed {count} entries, {size / 2**20:.1f} MiB")


@app.command(epilog="\b\nExample: edgedeploy inspect out/demo-trt --json")
def inspect(
    path: Path = typer.Argument(..., metavar="PATH", help="a TensorRT plan, its .plan.json manifest, or a folder "
                                                          "built with --target trt"),
    as_json: bool = typer.Option(False, "--json", metavar="", help="print the manifest as JSON"),
    debug: bool = DEBUG,
) -> None:
    """Show what a TensorRT plan was built for.

    Exit 1 when this machine cannot run it (TensorRT version, GPU, compatibility mode; checked before loading)."""
    from edgedeploy.backends import tensorrt, trt_manifest

    here = tensorrt.probe_runtime()
    text, result, _ = trt_manifest.inspect(path, runtime_trt_version=here["trt_version"],
                                           gpu_cc=(here["gpu"] or {}).get("compute_capability"),
                                           runtime_note=here["reason"], as_json=as_json)
    typer.echo(text)
    if not result.ok:
        raise EdgeDeployError(f"this machine cannot run the plan: {result.problems[0]}", where=str(path),
                              fix="rebuild the engine on this machine (edgedeploy build ... --target trt)")


@app.command(epilog="\b\nExample: edgedeploy docs readme | less   (the README: 'Your own model', the Jetson, the fleet)")
def docs(
    topic: Optional[str] = typer.Argument(None, metavar="TOPIC", show_default="list the topics",
                                          help="readme | precision | validation | tensorrt | report-schema | ..."),
    debug: bool = DEBUG,
) -> None:
    """Print the documentation shipped with edgedeploy (README and guides), or list it with where it is."""
    import importlib.resources

    guide = importlib.resources.files("edgedeploy.guide")
    topics = {("readme" if p.name == "README.md" else p.name[:-3]): p
              for p in sorted(guide.iterdir(), key=lambda p: p.name) if p.name.endswith(".md")}
    if topic is None:
        for name, path in topics.items():
            typer.echo(f"{name:16} {path}")
        return
    if topic.lower().removesuffix(".md") not in topics:
        raise UsageError(f"no documentation topic {topic!r}", fix=f"use one of: {', '.join(topics)}")
    typer.echo(topics[topic.lower().removesuffix(".md")].read_text(encoding="utf-8"))


def _error_line(label: str, message: str) -> None:
    """`label message` on stderr; the message is plain text, never read as rich markup (paths and names are the
    user's: `res[/]ult` is a folder name, not a closing tag)."""
    console.print(Text.assemble((label, "red"), " ", message), highlight=False, soft_wrap=True)


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised where the program is, so every `with` block cleans up (staging folders, locks, the
    device's command of `remote`); `note` is what the cleanup did that the one line should say."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_signalled: list[Interrupted] = []  # the signal that arrived, however a library then reported its interrupt


def _interrupted(signum: int, frame) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):  # a second signal does not wait for the cleanup
        signal.signal(sig, lambda s, f: os._exit(128 + s))
    _signalled.append(Interrupted(signum))
    raise _signalled[-1]


def _interrupted_line(e: KeyboardInterrupt) -> int:
    """`interrupted; <folder> unchanged` (and what was stopped); the exit code, 128 + the signal."""
    from edgedeploy.outfolder import WRITTEN, folders_in_progress

    folders = folders_in_progress()
    said = "; ".join([*([f"{', '.join(map(str, folders))} unchanged"] if folders else []),
                      *([f"{', '.join(map(str, WRITTEN))} written"] if WRITTEN else []),
                      *([] if folders or WRITTEN else ["nothing was written"]),
                      *([e.note] if getattr(e, "note", None) else [])])
    _error_line("interrupted;", said)
    return 128 + getattr(e, "signum", signal.SIGINT)


def _interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt (or Interrupted) an exception was raised from or while handling, if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def main() -> None:
    """The command line, with every failure as one line: EdgeDeployError (and OS errors the user can fix, such as a
    full disk) as `error:` with their exit code; anything else is a bug in edgedeploy or a library
    (`internal error`); SIGINT and SIGTERM as `interrupted; <folder> unchanged`, exit 130 / 143."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupted)
    try:
        app()
    except Exception as e:
        if _signalled:  # a library caught the interrupt and failed otherwise (torch's half-done import, say)
            sys.exit(_interrupted_line(_signalled[0]))
        _fail(e)
    except KeyboardInterrupt as e:
        sys.exit(_interrupted_line(e))
    except SystemExit as e:  # Typer turns an interrupt into exit 130, silently: answer it here
        interrupt = _interrupt_behind(e) or (_signalled[0] if _signalled and e.code not in (0, None) else None)
        if interrupt is None:
            raise
        sys.exit(_interrupted_line(interrupt))


def _fail(e: Exception) -> None:
    """Exit with the one line of a failure (called while `e` is handled, for --debug's traceback): EdgeDeployError
    (and OS errors the user can fix, a full disk say) as `error:`, anything else as `internal error:`."""
    from edgedeploy.fileio import write_error

    if _debug["on"]:
        traceback.print_exc()
    if isinstance(e, EdgeDeployError):
        if _debug["on"] and e.log:
            console.print(e.log, markup=False, highlight=False, soft_wrap=True)
        _error_line("error:", e.message)
        sys.exit(e.exit_code)
    if isinstance(e, MemoryError):  # the machine's limit, not a bug: say so, and what to change
        _error_line("error:", f"out of memory ({type(e).__name__}: {e}). use fewer validation or calibration "
                              "samples (validation.samples, calibration.subset_size), or a machine with more memory")
        sys.exit(1)
    known = write_error(e) if isinstance(e, OSError) else None  # a full disk or read-only folder, not a bug
    if known is not None:
        _error_line("error:", known.message)
        sys.exit(known.exit_code)
    _error_line("internal error:", f"{type(e).__name__}: {strip_ansi(str(e))} (rerun with --debug for the traceback)")
    sys.exit(1)


if __name__ == "__main__":
    main()
