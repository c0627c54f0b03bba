"""`edgedeploy build --precision auto`: build the precisions a target runs on this machine, time them side by side,
keep the fastest that meets its accuracy budget.

Candidates, each a normal validated build into `<out>/candidates/<name>/` (export and optimize come from the stage
cache, calibration results from the shared `<out>/cache`):

- `fp32`;
- `fp16` where the hardware computes in a reduced float: TensorRT (any GPU it builds for); OpenVINO on a CPU with
  AVX512-FP16 (on a CPU without it or bf16 an fp16 IR runs at f32 speed, so it is skipped), and as `bf16` (the fp16 IR
  with the bf16 inference precision, judged by its own budget: `thresholds.bf16`, else the default bf16 budget of
  edgedeploy.config) on a CPU with AVX512-BF16/AMX-BF16: on a Xeon with
  AMX, bf16 ran the benchmark models 1.3-9.4x faster than f16 on AVX512-FP16 (docs/benchmarks.md); not ONNX
  Runtime's CPU provider, which has no fp16 convolution kernels on x86 (an fp16 graph runs slower than fp32);
- `int8`;
- `int8-keep-float`: when int8 misses its budget, `edgedeploy debug precision`'s search finds the fewest worst layers
  (localisation ranking) to keep in float for the budget to hold, up to `max_layers`; when int8 meets it, keeping
  layers in float could only be slower, so the candidate is skipped.

The built artifacts are then timed in one fresh process, interleaved in rounds
(edgedeploy.validate.latency.measure_fresh), at every batch size of the spec; the choice is made at the first (the
deployment batch: `--static-batch N` when given): the fastest candidate within its budget, unless another within its
budget is `within noise` of it (the 95 % interval of their latency ratio over the rounds holds 1), when the more
accurate of them is kept. Every row gives its ratio to the chosen one with that interval, the budget it was judged
by and the accuracy checks that budget holds (int8's default budget has task drops only, fp16's a rel-L2 too).
The winner's files become the output folder; its report gets `auto` (every candidate's latency, accuracy, budget
verdict and why it lost) rendered as a table and a latency/accuracy plot in report.md/report.html, and the plot as
`auto-frontier.png`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgedeploy import fileio, pipeline
from edgedeploy.backends import BuildResult, target_kind
from edgedeploy.config import BuildSpec, Thresholds
from edgedeploy.device import cpu_flags
from edgedeploy.outfolder import OutputFolder
from edgedeploy import precision_debug as debug
from edgedeploy.precision_debug import keep_in_float
from edgedeploy.stagecache import StageCache
from edgedeploy.tasks import task_of
from edgedeploy.validate import latency
from edgedeploy.validate.gate import load_reference
from edgedeploy.validate.html import frontier_png
from edgedeploy.validate.write import write_reports

CANDIDATES = ("fp32", "fp16", "int8", "int8-keep-float")
PLOT = "auto-frontier.png"


@dataclass
class Candidate:
    name: str
    precision: str
    skipped: str | None = None  # why it was not built
    hint: str | None = None  # the backend's inference precision for this candidate (TargetKind.with_hint)
    kept_float: list[str] = field(default_factory=list)
    dir: Path | None = None
    report: dict[str, Any] | None = None


def _cpu_flags() -> set[str]:
    return cpu_flags()


def candidates_for(spec: BuildSpec) -> list[Candidate]:
    """The candidates of `spec.target`, those this machine would not run faster marked skipped with the reason."""
    out = []
    for name in CANDIDATES:
        precision = "int8" if name.startswith("int8") else name
        skipped, hint = None, None
        if name == "fp16":
            name, skipped, hint = target_kind(spec.target).fp16_candidate(spec, _cpu_flags)
        out.append(Candidate(name, precision, skipped, hint=hint))
    return out


def build_auto(spec: BuildSpec, out_dir: Path, *, trust_code: bool = False, listener=None, cache=None,
               max_layers: int = 16) -> dict[str, Any]:
    """Build, time and choose (module docstring); returns the winner's report, written to out_dir."""
    candidates = candidates_for(spec)
    for c in candidates:
        if c.skipped is None:
            pipeline.check_request(spec.model_copy(update={"precision": c.precision}))
    folder = OutputFolder(out_dir)
    spec, folder.keep = pipeline.reused_results(spec, folder)
    with folder:
        stages = cache if cache is not None else StageCache(folder.staging / ".stage-cache")  # shared within the run
        for c in candidates:
            if c.name == "int8-keep-float" and c.skipped is None:
                c.skipped, c.kept_float = _keep_float(next(x for x in candidates if x.name == "int8"), max_layers)
            if c.skipped is not None:
                continue
            c.dir = folder.staging / "candidates" / c.name
            c.report = pipeline.build(_candidate_spec(spec, c), c.dir, trust_code=trust_code, listener=listener,
                                      cache=stages)
        if cache is None:
            shutil.rmtree(folder.staging / ".stage-cache", ignore_errors=True)
        summary = _choose(spec, candidates)
        winner = next(c for c in candidates if c.name == summary["chosen"])
        _copy_build(winner.dir, folder.staging)
        report = {**winner.report, "auto": summary}
        report = folder.relocate(report)
        plot = frontier_png(report["auto"])
        if plot is not None:
            fileio.write_bytes(folder.staging / PLOT, plot)
        write_reports(report, folder.staging)  # the images are drawn in the candidate's own report.html
        folder.commit()
    return report


def _candidate_spec(spec: BuildSpec, c: Candidate) -> BuildSpec:
    candidate = spec.model_copy(update={"precision": c.precision})
    if c.hint is not None:
        candidate = target_kind(spec.target).with_hint(candidate, c.hint)
    if c.hint == "bf16" and "bf16" not in spec.thresholds:  # its own budget: the config's bf16 one, else the default
        candidate = candidate.model_copy(update={"thresholds": {**spec.thresholds, "bf16": Thresholds()}})
    return keep_in_float(candidate, c.kept_float, spec.calibration.cache_dir) if c.kept_float else candidate


def _keep_float(int8: Candidate, max_layers: int) -> tuple[str | None, list[str]]:
    """(why skipped, layers to keep in float) from the int8 candidate: skipped when it meets its budget or was not
    built; else the fewest worst layers the debug-precision search finds (or its largest trial when none passes)."""
    if int8.report is None:
        return "no int8 build to start from", []
    if int8.report["passed"]:
        return "int8 meets its budget with every layer quantized", []
    art = debug.load_artifact(int8.dir)
    ranking = [lay.layer for lay in debug.rank(debug.localize_artifact(art, 32, art.spec.validation.latency.threads))]
    trials = debug.search(art, ranking, debug.budget_for(art.spec, {}), max_layers,
                          threads=art.spec.validation.latency.threads)
    found = debug.best(trials)
    if found is None:
        tried = max(trials, key=lambda t: len(t.kept_float))
        return None, tried.kept_float or ranking[:1]
    return None, found.kept_float


def _copy_build(src: Path, dst: Path) -> None:
    """The winner's build (its files and folders, not its own candidates) into the output folder."""
    for path in src.iterdir():
        target = dst / path.name
        if path.is_dir():
            shutil.copytree(path, target, dirs_exist_ok=True)
        else:
            shutil.copy2(path, target)


def _accuracy(report: dict[str, Any]) -> tuple[str, float]:
    """(metric name, value) of a candidate's accuracy: its task metric, else its worst rel-L2."""
    task = report.get("task") or {}
    kind = task_of(task)
    for key in kind.ranking_metrics if kind is not None else ():
        if isinstance(task.get(key), (int, float)):
            return key, float(task[key])
    return "worst rel-L2", max(t["rel_l2"] for t in report["tensors"].values())


def _more_accurate(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether candidate report `a` is more accurate than `b` on their common axis (a task metric: higher is
    better; rel-L2: lower is better)."""
    (metric_a, value_a), (metric_b, value_b) = _accuracy(a), _accuracy(b)
    if metric_a != metric_b:
        return False
    return value_a < value_b if metric_a == "worst rel-L2" else value_a > value_b


def _judged_on(report: dict[str, Any]) -> list[str]:
    """The accuracy budgets a candidate was checked against (names and limits), so the table says which axis each
    candidate was judged on."""
    return [f"{c['name']} {c['op']} {c['limit']:g}" for c in report["checks"]
            if c.get("group") in ("tensor", "task") and c.get("origin") in ("default", "config")
            and c.get("status") != "skip" and isinstance(c.get("limit"), (int, float))]


def _choose(spec: BuildSpec, candidates: list[Candidate]) -> dict[str, Any]:
    """Time the built candidates in one fresh process (interleaved rounds), pick the fastest within its budget;
    a candidate whose latency ratio to the fastest has a 95 % interval holding 1 is `within noise` of it, and among
    those the most accurate is chosen."""
    built = [c for c in candidates if c.report is not None]
    artifacts = {c.name: BuildResult(c.dir / c.report["artifact"]["path"], [],
                                     {k: v for k, v in c.report["artifact"].items() if k != "path"}) for c in built}
    inputs = load_reference(built[0].dir / "reference.npz")[0]
    batches = list(spec.validation.latency.batch_sizes) if spec.static_batch is None else [spec.static_batch]
    settings = spec.validation.latency
    timing = settings.model_copy(update={  # the decision gets a time budget whatever the builds' reports used
        "iterations": None, "async_requests": 0,
        "duration_s": max(settings.duration_s or latency.DEFAULT_DURATION_S, latency.DEFAULT_DURATION_S)})
    timed = spec.model_copy(update={"validation": spec.validation.model_copy(update={"latency": timing})})
    measured = latency.measure_fresh(timed, artifacts, inputs, batches)["timings"]
    rank_batch = batches[0]
    first = {c.name: measured[c.name][0] for c in built}
    median = {name: t["median_ms"] for name, t in first.items()}

    def versus(a: Candidate, b: Candidate) -> dict[str, Any]:
        interval = latency.ratio_interval(first[a.name].get("round_medians_ms", [median[a.name]]),
                                          first[b.name].get("round_medians_ms", [median[b.name]]))
        return {**interval, "verdict": latency.ratio_verdict(interval)}

    passing = [c for c in built if c.report["passed"]]
    fastest = min(passing, key=lambda c: median[c.name]) if passing else None
    chosen, tied = fastest, []
    if fastest is not None:
        tied = [c for c in passing if c is not fastest and versus(c, fastest)["verdict"] == "within noise"]
        for c in tied:
            if _more_accurate(c.report, chosen.report):
                chosen = c
    if chosen is None:
        chosen = next(c for c in built if c.name == "fp32")
    rows = []
    for c in candidates:
        row: dict[str, Any] = {"name": c.name, "precision": c.precision, "built": c.report is not None}
        if c.kept_float:
            row["kept_float"] = c.kept_float
        if c.report is None:
            row["why"] = f"skipped: {c.skipped}"
            rows.append(row)
            continue
        metric, value = _accuracy(c.report)
        failed = [ch["name"] for ch in c.report["checks"] if not ch["passed"]]
        budgets = {ch.get("budget") for ch in c.report["checks"] if ch.get("budget")}
        row.update(passed=c.report["passed"], metric=metric, accuracy=value,
                   latency_ms={str(t["batch"]): t["median_ms"] for t in measured[c.name]},
                   cov={str(t["batch"]): t["cov"] for t in measured[c.name]},
                   effective_hint=c.report["conditions"].get("precision_hint_effective"),
                   budget=", ".join(sorted(budgets)) or c.precision, judged_on=_judged_on(c.report))
        if c is not chosen:
            vs = versus(c, chosen)
            row["vs_chosen"] = {"ratio": vs["ratio"], "ci95": vs["ci95"], "verdict": vs["verdict"],
                                "rounds": vs["rounds"]}
        spread = (f"{row['vs_chosen']['ratio']:.2f}x the latency of {chosen.name} at batch {rank_batch}, 95% "
                  f"{row['vs_chosen']['ci95'][0]:.2f}-{row['vs_chosen']['ci95'][1]:.2f}x"
                  if c is not chosen else "")
        if c is chosen:
            row["why"] = ("chosen: no candidate meets its budget" if not passing else
                          "chosen: fastest within its budget" if c is fastest else
                          f"chosen: within noise of the fastest ({fastest.name}) and more accurate ({metric})")
        elif failed:
            row["why"] = f"fails its budget: {', '.join(failed)}"
        elif c is fastest:
            row["why"] = f"fastest, but within noise of {chosen.name}, which is more accurate ({spread})"
        elif c in tied:
            row["why"] = f"within noise of {chosen.name} and not more accurate ({spread})"
        else:
            row["why"] = spread
        rows.append(row)
    return {"chosen": chosen.name, "batch": rank_batch, "batches": batches, "candidates": rows,
            "passed": bool(passing), "plot": PLOT}


__all__ = ["build_auto", "candidates_for", "CANDIDATES"]
