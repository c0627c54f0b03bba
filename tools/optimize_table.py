"""Node counts of edgedeploy's optimize stage against onnxsim alone and onnxslim alone, with the output error.

    python tools/optimize_table.py                 # the test models: demo (both export modes), MobileNetV2-style
    python tools/optimize_table.py a.onnx b.onnx   # any ONNX files

Prints one Markdown table: nodes and BatchNormalization left for the raw graph, each simplifier alone and ours, and
ours' worst rel-L2 against the raw graph on seeded random inputs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import onnx

from edgedeploy.graph.optimize import OptimizeSettings, optimize_model
from edgedeploy.graph.simplify import run_onnxsim, run_onnxslim
from edgedeploy.graph.verify import compare_models

REPO = Path(__file__).resolve().parents[1]


def _count(model: onnx.ModelProto) -> str:
    bn = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    return f"{len(model.graph.node)} ({bn} BN)"


def _try(fn, model):
    try:
        return _count(fn(model))
    except Exception as e:  # a simplifier that fails is a row entry, not the end of the table
        return f"failed: {type(e).__name__}"


def row(name: str, raw: onnx.ModelProto, drop: list[str]) -> str:
    """Simplifiers alone get the graph with the same outputs kept, so pruning is not what makes the difference."""
    ours, _ = optimize_model(raw, OptimizeSettings(drop_outputs=drop))
    same_outputs = _only(raw, [o.name for o in ours.graph.output])
    worst = max(e["rel_l2"] for e in compare_models(same_outputs, ours).values())
    return (f"| {name} | {_count(raw)} | {_try(run_onnxsim, same_outputs)} | {_try(run_onnxslim, same_outputs)} "
            f"| {_count(ours)} | {worst:.1e} |")


def _only(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    from edgedeploy.graph.prune import prune_outputs

    return prune_outputs(model, keep=outputs)[0]


def test_models(work: Path) -> list[tuple[str, onnx.ModelProto, list[str]]]:
    from edgedeploy import export
    from edgedeploy.config import demo_spec_path, load_spec

    models = []
    for config, label in (("demo.yaml", "demo, exporter-folded"), ("demo_training.yaml", "demo, training graph")):
        spec = load_spec(demo_spec_path().with_name(config))
        path = export.export_onnx(spec, export.build_module(spec), work / f"{config}.onnx")
        models.append((label, onnx.load(str(path)), list(spec.optimize.drop_outputs)))
    sys.path.insert(0, str(REPO / "tests"))
    import torch
    from test_graph_mobilenet import TinyMobileNetV2

    torch.manual_seed(0)
    mnv2 = TinyMobileNetV2().eval()
    with torch.no_grad():  # trained-like BN statistics, so a wrong fold would show in the error column
        for m in mnv2.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    program = torch.onnx.export(mnv2, (torch.randn(2, 3, 32, 32),), dynamo=True, optimize=False,
                                external_data=False, input_names=["x"], output_names=["logits"],
                                dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    program.save(str(work / "mnv2.onnx"))
    models.append(("MobileNetV2-style, BN unfused", onnx.load(str(work / "mnv2.onnx")), []))
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--drop-output", action="append", default=[], help="outputs to drop (glob), as in optimize")
    args = parser.parse_args()
    print("| model | raw | onnxsim alone | onnxslim alone | edgedeploy | rel-L2 |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        models = ([(p.name, onnx.load(str(p)), args.drop_output) for p in args.models] if args.models
                  else test_models(Path(tmp)))
        for name, model, drop in models:
            print(row(name, model, drop), flush=True)


if __name__ == "__main__":
    main()
