"""Replace small computed constants by initializers (exact), so the simplifiers and later passes see them.

dynamo's unoptimized export writes Clip bounds and conv biases as CastLike(Constant, x) / Expand(…, Shape(W)):
constants, but only once the dtype of a runtime tensor is known, which onnxsim and onnxslim do not fold. Every node
whose outputs `Graph.constant` can compute (COMPUTABLE_OPS over constants) becomes an initializer, unless that
would materialize a large tensor from small inputs (an Expand to a feature-map shape, say).
"""

from __future__ import annotations

import numpy as np
import onnx

from edgedeploy.graph.ir import Graph, PassStats

SMALL = 4096  # elements a computed constant may always have


def fold_constants(model: onnx.ModelProto) -> tuple[onnx.ModelProto, PassStats]:
    """A new model in which every computable constant node is an initializer of the same name."""
    stats = PassStats("fold_constants")
    g = Graph(model, infer_shapes=True)
    for node in g.nodes:
        if node.op_type == "Constant" or not g.alive(node):
            continue
        values = [g.constant(o) if o.name else None for o in node.outputs]
        if not values or any(v is None for v in values):
            continue
        in_size = sum(int(np.size(c)) for c in (g.constant(i) for i in node.inputs) if c is not None)
        if any(v.size > max(in_size, SMALL) for v in values):
            continue
        g.replace_by_constant(node, values)
        stats.count("nodes_folded")
    return g.finish(), stats
