"""Drop graph outputs the deployment does not need (e.g. a training-only aux head) and everything only they needed.

Outputs are chosen by exact name or fnmatch glob (case-sensitive). After the outputs are cut, every node,
initializer, Constant node and value_info that no kept output depends on is removed (onnx-ir's dead-code removal,
which also clears optional outputs nothing reads and dead nodes inside subgraphs). Graph inputs stay, even if no
kept output reads them any more, so the deployed model's interface does not change under the caller.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

import onnx

from edgedeploy.errors import UsageError
from edgedeploy.graph.ir import PassStats
from edgedeploy.graph.onnxir import (
    named_outputs,
    node_count,
    remove_dead_code,
    to_ir,
    to_onnx,
)


def _matches(name: str, pattern: str) -> bool:
    return name == pattern or fnmatch.fnmatchcase(name, pattern)


def select_outputs(names: Sequence[str], keep: Sequence[str] | None = None, drop: Sequence[str] = ()) -> list[str]:
    """The output names left after `keep` (names or globs; None or empty keeps all) and `drop` (names or globs)."""
    if isinstance(keep, str):
        keep = [keep]
    if isinstance(drop, str):
        drop = [drop]
    available = ", ".join(f"'{n}'" for n in names)
    if keep:
        for pattern in keep:
            if not any(_matches(n, pattern) for n in names):
                raise UsageError(
                    f"output '{pattern}' is not an output of this model",
                    where="optimize keep_outputs",
                    fix=f"Choose from the model's outputs: {available}",
                )
        kept = [n for n in names if any(_matches(n, p) for p in keep)]
    else:
        kept = list(names)
    kept = [n for n in kept if not any(_matches(n, p) for p in drop)]
    if not kept:
        raise UsageError(
            "no output would be left: keep/drop select none of the model's outputs",
            where="optimize keep_outputs/drop_outputs",
            fix=f"Keep at least one of: {available}",
        )
    return kept


def prune_outputs(
    model: onnx.ModelProto, keep: Sequence[str] | None = None, drop: Sequence[str] = ()
) -> tuple[onnx.ModelProto, PassStats]:
    """A new model with only the selected outputs and only what they need. `keep` None or empty keeps every output
    `drop` does not match. Raises UsageError for a `keep` entry that matches no output and for a selection that
    leaves no output."""
    stats = PassStats("prune")
    names = [o.name for o in model.graph.output]
    kept = select_outputs(names, keep, drop)
    for pattern in [drop] if isinstance(drop, str) else drop:
        if not any(_matches(n, pattern) for n in names):
            stats.note(f"drop pattern '{pattern}' matches no output")
    m = to_ir(model)
    removed_outputs = [n for n in names if n not in kept]
    if removed_outputs:
        m.graph.outputs[:] = [v for v in m.graph.outputs if v.name in kept]
        stats.count("outputs_removed", len(removed_outputs))
        stats.note(f"removed outputs: {', '.join(removed_outputs)}")
    before, n_init, outputs_before = node_count(m), len(m.graph.initializers), named_outputs(m)
    remove_dead_code(m)
    after, outputs_after = node_count(m), named_outputs(m)
    stats.count("nodes_removed", before["other"] - after["other"])
    stats.count("constant_nodes_removed", before["Constant"] - after["Constant"])
    stats.count("initializers_removed", n_init - len(m.graph.initializers))
    stats.count("optional_outputs_removed", sum(n - outputs_after[node] for node, n in outputs_before.items()
                                                if node in outputs_after))
    unused_inputs = [v.name for v in m.graph.inputs if not v.uses() and v not in m.graph.outputs]
    out = to_onnx(m, model)
    described = {vi.name for vi in out.graph.value_info} | {v.name for v in [*out.graph.input, *out.graph.output]}
    stats.count("value_info_removed", len({vi.name for vi in model.graph.value_info} - described))
    if unused_inputs:
        stats.note(f"graph inputs no kept output reads (kept for a stable interface): {', '.join(unused_inputs)}")
    return out, stats
