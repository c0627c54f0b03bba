"""The `edgedeploy` command line: a thin Typer layer over the pipeline, with rich progress per stage.

Every expected failure is one line on stderr and exit code 2 (usage) or 1 (failure); --debug adds the traceback.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Optional, get_args

import typer
from rich.console import Console
from rich.markup import escape

from edgedeploy.errors import EdgeDeployError, UsageError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Take a trained model to a verified TensorRT / OpenVINO / ONNX Runtime artifact.")
console = Console(stderr=True)
_debug = {"on": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="show tracebacks and tool logs on failure")) -> None:
    _debug["on"] = debug


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
        console.print(f"[green]✓[/] {stage:<9} {seconds:6.1f} s  {summary}")

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()


@app.command()
def build(
    config: Optional[Path] = typer.Argument(None, help="YAML build spec; without it, the bundled demo detector"),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="openvino | onnxruntime | trt"),
    precision: Optional[str] = typer.Option(None, "--precision", "-p", help="fp32 | fp16 | int8 | auto (build the "
                                                                            "candidates, keep the fastest in budget)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="output folder [default: edgedeploy-out/NAME-TARGET-PRECISION]"),
    trust_code: bool = typer.Option(False, "--trust-code", help="allow loading a pickled checkpoint (runs code from it)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="re-run export and optimize instead of reusing their "
                                                            "results from the stage cache (edgedeploy cache ls)"),
    static_batch: Optional[int] = typer.Option(None, "--static-batch", min=1,
                                               help="build a static-shape artifact for this fixed deployment batch"),
) -> None:
    """Export, optimize, build and validate a model; exit 1 when a check fails."""
    from edgedeploy import pipeline
    from edgedeploy.config import Precision, Target, demo_spec_path, load_spec
    from edgedeploy.stagecache import StageCache

    spec = load_spec(config if config is not None else demo_spec_path())
    auto = precision == "auto"
    for flag, value, allowed in (("--target", target, get_args(Target)),
                                 ("--precision", precision, (*get_args(Precision), "auto"))):
        if value is not None and value not in allowed:
            raise UsageError(f"invalid {flag} {value!r}", fix=f"use one of: {', '.join(allowed)}")
    updates = {"target": target, "precision": None if auto else precision, "static_batch": static_batch}
    spec = spec.model_copy(update={k: v for k, v in updates.items() if v})
    chosen = "auto" if auto else spec.precision
    out = out or Path("edgedeploy-out") / f"{spec.name}-{spec.target}-{chosen}"
    if not auto:
        pipeline.check_request(spec)
    console.print(f"[bold]edgedeploy build[/] {spec.name} → {spec.target} {chosen} in {out}")
    stages = _RichStages()
    cache = None if no_cache else StageCache()
    try:
        if auto:
            from edgedeploy.auto import build_auto

            report = build_auto(spec, out, trust_code=trust_code, listener=stages, cache=cache)
            console.print(f"precision auto chose [bold]{report['auto']['chosen']}[/]: "
                          + "; ".join(f"{r['name']} {r['why']}" for r in report["auto"]["candidates"]),
                          highlight=False)
        else:
            report = pipeline.build(spec, out, trust_code=trust_code, listener=stages, cache=cache)
    finally:
        stages.stop()
    _finish(report, out)


@app.command()
def validate(
    artifact_dir: Path = typer.Argument(..., help="a folder written by `edgedeploy build` (manifest.json, reference.npz)"),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="a committed report.json to compare against"),
    junit: Optional[Path] = typer.Option(None, "--junit", help="write JUnit XML here (one testcase per check)"),
    config: Optional[Path] = typer.Option(
        None, "--config", help="YAML overriding thresholds / validation / regression (or a full build spec)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="report folder [default: ARTIFACT_DIR/validate]"),
) -> None:
    """Re-run a built artifact on its stored reference (no torch), check thresholds and a baseline; exit 0 pass,
    1 fail, 2 usage error. Writes report.json, report.md and report.html."""
    from edgedeploy.validate.gate import validate_artifact

    with console.status("[bold]validate[/]…"):
        report = validate_artifact(artifact_dir, baseline=baseline, config=config, out_dir=out, junit=junit)
    out = out or artifact_dir / "validate"
    for c in report["checks"]:
        mark = {"pass": "[green]✓[/]", "fail": "[red]✗[/]", "skip": "[yellow]-[/]"}[c["status"]]
        if c["status"] != "pass":
            console.print(f"{mark} {escape(c['message'])}", highlight=False)
    _finish(report, out)


@app.command()
def optimize(
    model: Path = typer.Argument(..., help="the ONNX model to optimize"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the optimized ONNX"),
    keep_output: list[str] = typer.Option([], "--keep-output", help="keep only these outputs (repeatable)"),
    drop_output: list[str] = typer.Option([], "--drop-output", help="drop outputs by name or glob, e.g. 'aux*'"),
    simplifier: str = typer.Option("auto", "--simplifier", help="auto | onnxsim | onnxslim | none"),
    report: Optional[Path] = typer.Option(None, "--report", help="write the verification report (JSON) here"),
) -> None:
    """Fold BN and per-channel affines, merge RepConv branches, prune outputs, simplify; every pass verified."""
    from edgedeploy import fileio
    from edgedeploy.graph.optimize import OptimizeSettings, optimize_file

    if simplifier not in ("auto", "onnxsim", "onnxslim", "none"):
        raise UsageError(f"invalid --simplifier {simplifier!r}", fix="use one of: auto, onnxsim, onnxslim, none")
    settings = OptimizeSettings(keep_outputs=keep_output or None, drop_outputs=drop_output, simplifier=simplifier)
    with console.status("[bold]optimize[/]…"):
        result = optimize_file(model, output, settings)
    console.print(result.summary(), highlight=False)
    if report is not None:
        fileio.write_json(report, result.to_dict())
    rolled_back = [p.name for p in result.passes if p.status in ("rolled_back", "failed")]
    note = f"; not applied: {', '.join(rolled_back)} (see the report)" if rolled_back else ""
    console.print(f"[green]✓[/] {output}: {sum(result.nodes_before.values())} → {sum(result.nodes_after.values())} "
                  f"nodes, outputs {', '.join(result.outputs)}{note}")


debug_app = typer.Typer(no_args_is_help=True, help="Find what loses accuracy in a built artifact.")
app.add_typer(debug_app, name="debug")


@debug_app.command("precision")
def debug_precision(
    artifact_dir: Path = typer.Argument(..., help="a folder written by `edgedeploy build --precision int8`"),
    samples: int = typer.Option(32, "--samples", help="validation samples the per-layer errors are measured on"),
    search: bool = typer.Option(False, "--search", help="find the fewest worst layers to keep in float so the "
                                                        "int8 budget holds (each trial requantizes)"),
    max_layers: int = typer.Option(16, "--max-layers", help="--search keeps at most this many layers in float"),
    max_map50_drop: Optional[float] = typer.Option(None, "--max-map50-drop", help="budget override (mAP units)"),
    max_top1_drop: Optional[float] = typer.Option(None, "--max-top1-drop", help="budget override"),
    rebuild: Optional[Path] = typer.Option(None, "--rebuild", help="with --search: build the found configuration "
                                                                   "into this folder"),
    top: int = typer.Option(10, "--top", help="layers listed here (all are in the report)"),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="report folder [default: ARTIFACT_DIR/debug-precision]"),
) -> None:
    """Rank the layers of an INT8 artifact by the error each adds (vs its float graph, per intermediate tensor);
    with --search, keep the worst in float until the budget holds; exit 1 when no such set is found."""
    from edgedeploy.precision import debug

    if rebuild is not None and not search:
        raise UsageError("--rebuild needs --search (it builds what the search found)")
    with console.status("[bold]debug precision[/]…") as status:
        report = debug.debug_precision(
            artifact_dir, out, samples=samples, do_search=search, max_layers=max_layers,
            budget_overrides={"max_map50_drop": max_map50_drop, "max_top1_drop": max_top1_drop},
            progress=lambda line: (status.update(f"[bold]debug precision[/] {escape(line)}"),
                                   console.print(f"  {escape(line)}", highlight=False)))
    by_name = {lay["layer"]: lay for lay in report["layers"]}
    console.print(f"worst {min(top, len(report['ranking']))} of {len(report['ranking'])} quantized layers "
                  f"(local rel-L2 / cumulative rel-L2):")
    for name in report["ranking"][:top]:
        lay = by_name[name]
        console.print(f"  {lay['local_rel_l2']:.4f} / {lay['rel_l2']:.4f}  {escape(name)} ({lay['op_type']})",
                      highlight=False)
    report_dir = out or artifact_dir / "debug-precision"
    result = report.get("result")
    if result is None:
        console.print(f"→ {report_dir / 'report.md'}", highlight=False, soft_wrap=True)
        return
    if not result["passed"]:
        raise EdgeDeployError(f"the int8 budget does not hold with up to {max_layers} worst layers in float",
                              where=str(report_dir / "report.md"),
                              fix="raise --max-layers, or check the calibration data and preprocessing")
    console.print(f"[green]✓[/] {len(result['kept_float'])} layer(s) in float meet the budget → "
                  f"{report_dir / 'keep-float.yaml'}", highlight=False, soft_wrap=True)
    if rebuild is not None:
        stages = _RichStages()
        try:
            built = debug.rebuild(artifact_dir, result["kept_float"], rebuild, listener=stages)
        finally:
            stages.stop()
        _finish(built, rebuild)


def _finish(report: dict, out: Path) -> None:
    """Print the one-line summary; a failed check makes the command exit 1, naming the checks."""
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
    verdict = "[green]PASS[/]" if report["passed"] else "[red]FAIL[/]"
    counts = {k: sum(c.get("status") == k for c in report["checks"]) for k in ("pass", "fail", "skip")}
    parts.append(f"checks {counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    console.print(f"{verdict} {'; '.join(parts)}; total {report['wall_seconds']:.1f} s → {out / 'report.md'}")


cache_app = typer.Typer(no_args_is_help=True, help="The stage cache: export and optimize results reused by content "
                                                   "across builds ($XDG_CACHE_HOME/edgedeploy).")
app.add_typer(cache_app, name="cache")


@cache_app.command("ls")
def cache_ls() -> None:
    """List the cached stage results: stage, key, size, age, what each was made from."""
    from edgedeploy.stagecache import StageCache

    cache = StageCache()
    entries = cache.entries()
    for e in entries:
        typer.echo(f"{e['stage']:<9} {e['key']}  {e['bytes'] / 2**20:8.1f} MiB  {e['age_s'] / 3600:7.1f} h  {e['from']}")
    total = sum(e["bytes"] for e in entries)
    typer.echo(f"{len(entries)} entries, {total / 2**20:.1f} MiB in {cache.root / 'stages'}")


@cache_app.command("clear")
def cache_clear(
    stage: Optional[str] = typer.Option(None, "--stage", help="only this stage's entries: export | optimize"),
) -> None:
    """Delete cached stage results (all, or one stage's); the next build re-runs those stages."""
    from edgedeploy.stagecache import STAGES, StageCache

    if stage is not None and stage not in STAGES:
        raise UsageError(f"invalid --stage {stage!r}", fix=f"use one of: {', '.join(STAGES)}")
    count, size = StageCache().clear(stage)
    typer.echo(f"removed {count} entries, {size / 2**20:.1f} MiB")


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="a TensorRT plan, its .plan.json manifest, or a folder built with --target trt"),
    as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON"),
) -> None:
    """Show what a TensorRT plan was built for; exit 1 when this machine cannot run it (checked before loading)."""
    from edgedeploy.backends import tensorrt, trt_manifest

    here = tensorrt.probe_runtime()
    text, result, _ = trt_manifest.inspect(path, runtime_trt_version=here["trt_version"],
                                           gpu_cc=(here["gpu"] or {}).get("compute_capability"),
                                           runtime_note=here["reason"], as_json=as_json)
    typer.echo(text)
    if not result.ok:
        raise EdgeDeployError(f"this machine cannot run the plan: {result.problems[0]}", where=str(path),
                              fix="rebuild the engine on this machine (edgedeploy build ... --target trt)")


def main() -> None:
    try:
        app()
    except EdgeDeployError as e:
        if _debug["on"]:
            traceback.print_exc()
        console.print(f"[red]error:[/] {escape(e.message)}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as e:  # a bug in edgedeploy or a library: still one line unless --debug
        from edgedeploy.fileio import write_error

        if _debug["on"]:
            traceback.print_exc()
        known = write_error(e) if isinstance(e, OSError) else None  # a full disk or read-only folder, not a bug
        if known is not None:
            console.print(f"[red]error:[/] {escape(known.message)}", highlight=False, soft_wrap=True)
            sys.exit(known.exit_code)
        console.print(f"[red]internal error:[/] {type(e).__name__}: {e} (rerun with --debug for the traceback)",
                      highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
