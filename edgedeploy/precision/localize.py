"""INT8 layer localisation: which layers of a quantized graph lose the accuracy.

Two figures per layer, both against the float graph (deploy.onnx) run by the same backend on the same samples:

- **cumulative** error: the layer's output in the quantized graph vs in the float graph, every intermediate tensor
  marked as an output (ONNX Runtime: graph outputs; OpenVINO: ``Model.add_outputs``). It grows along the graph, so it
  says *where* the error is, not who made it.
- **local** error: the layer alone, quantized as in the quantized graph, fed the *float* graph's activations: the
  error this layer adds by itself. Q/DQ ONNX: the node with its Q/DQ input chains is cut out with onnx's Extractor;
  OpenVINO: a clone of the quantized model in which each activation FakeQuantize feeding the op reads a new
  Parameter. Layers are ranked by local error; only layers with a quantized input are ranked.

Caveat (also in docs/precision.md): marking a tensor as an output can stop a backend fusing across it, so the
cumulative figures are those of the same quantization without those fusions; the end-to-end figures in the build's
report are of the real artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedeploy.errors import EdgeDeployError
from edgedeploy.validate import metrics

_QDQ = ("QuantizeLinear", "DequantizeLinear")
_OV_PLUMBING = {"Constant", "Parameter", "Result", "FakeQuantize", "Convert"}


@dataclass
class LayerError:
    layer: str  # the backend's op name (what an ignored scope names)
    node: str  # the deploy.onnx node it comes from
    op_type: str
    quantized: bool  # has a quantized input, so keeping it in float can help
    rel_l2: float  # cumulative
    snr_db: float
    cosine: float
    local_rel_l2: float | None  # this layer alone on float activations (None: not quantized)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _errors(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    m = metrics.compare(reference, candidate)
    return {"rel_l2": m["rel_l2"], "snr_db": m["snr_db"], "cosine": m["cosine"]}


def rank(layers: list[LayerError]) -> list[LayerError]:
    """Quantized layers, worst local error first (ties: worst cumulative error)."""
    return sorted((lay for lay in layers if lay.quantized),
                  key=lambda lay: (-(lay.local_rel_l2 or 0.0), -lay.rel_l2))


# ------------------------------------------------------------------------------------------- Q/DQ on ORT
def _with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    out.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    return out


def _ort_run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], outputs: list[str],
             threads: int | None = None) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    return dict(zip(outputs, session.run(outputs, {k: v for k, v in feeds.items() if k in wanted})))


def localize_qdq(float_onnx: Path, qdq_onnx: Path, inputs: dict[str, np.ndarray],
                 threads: int | None = None) -> list[LayerError]:
    """Per-layer errors of a Q/DQ ONNX graph vs its float graph, both on ONNX Runtime (CPU)."""
    from onnx.utils import Extractor

    fp, q = onnx.load(str(float_onnx)), onnx.load(str(qdq_onnx))
    tensors = [o for n in fp.graph.node for o in n.output if o]
    q_tensors = {o for n in q.graph.node for o in n.output}
    shared = [t for t in tensors if t in q_tensors]
    if not shared:
        raise EdgeDeployError("the quantized graph shares no tensor names with the float graph, so its layers "
                              "cannot be matched", where=str(qdq_onnx), fix="quantize deploy.onnx of this artifact")
    ref = {**inputs, **_ort_run(_with_outputs(fp, shared), inputs, shared, threads)}
    got = _ort_run(_with_outputs(q, shared), inputs, shared, threads)

    producer = {o: n for n in q.graph.node for o in n.output}
    initializers = {t.name for t in q.graph.initializer}

    def activation(tensor: str) -> str | None:
        """The float tensor a Q/DQ chain starts from; None for a weight (initializer or constant chain)."""
        while tensor in producer and producer[tensor].op_type in _QDQ:
            tensor = producer[tensor].input[0]
        return tensor if tensor in ref and tensor not in initializers else None

    extractor = Extractor(q)
    layers = []
    for node in q.graph.node:
        out = node.output[0] if node.output else ""
        if node.op_type in _QDQ or out not in ref or out not in got:
            continue
        quantized = any(i in producer and producer[i].op_type == "DequantizeLinear" for i in node.input)
        local = None
        if quantized:
            sources = sorted({a for a in map(activation, filter(None, node.input)) if a})
            part = extractor.extract_model(sources, [out])
            local = _errors(ref[out], _ort_run(part, {s: ref[s] for s in sources}, [out], threads)[out])["rel_l2"]
        layers.append(LayerError(node.name, node.name, node.op_type, quantized, local_rel_l2=local,
                                 **_errors(ref[out], got[out])))
    return layers


# ------------------------------------------------------------------------------------------- OpenVINO
def _node_name(op_name: str) -> str:
    """OpenVINO names a converted Conv's bias-free part `<node>/WithoutBiases`."""
    return op_name.split("/", 1)[0]


def localize_openvino(float_onnx: Path, int8_xml: Path, inputs: dict[str, np.ndarray],
                      threads: int | None = None) -> list[LayerError]:
    """Per-layer errors of an NNCF-quantized IR vs the float model converted from deploy.onnx, both on the OpenVINO
    CPU plugin with the f32 precision hint (so bf16 never blurs the comparison)."""
    import openvino as ov

    from edgedeploy.backends.openvino import convert_onnx

    core = ov.Core()
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    fp, q = convert_onnx(Path(float_onnx)), core.read_model(str(int8_xml))

    def ops(model) -> dict[str, Any]:
        return {o.get_friendly_name(): o for o in model.get_ops() if o.get_type_name() not in _OV_PLUMBING}

    fp_ops, q_ops = ops(fp), ops(q)
    shared = [n for n in fp_ops if n in q_ops and fp_ops[n].get_type_name() == q_ops[n].get_type_name()]
    if not shared:
        raise EdgeDeployError("the quantized IR shares no op names with the float model, so its layers cannot be "
                              "matched", where=str(int8_xml), fix="quantize deploy.onnx of this artifact")
    feeds = {p.get_friendly_name(): inputs[p.get_friendly_name()] for p in fp.get_parameters()}

    def run_marked(model) -> dict[str, np.ndarray]:
        marked = model.clone()
        by_name = {o.get_friendly_name(): o for o in marked.get_ops()}
        ports = marked.add_outputs([by_name[n].output(0) for n in shared])
        compiled = core.compile_model(marked, "CPU", config)
        result = compiled.create_infer_request().infer(feeds)
        return {n: np.array(result[compiled.outputs[len(compiled.outputs) - len(ports) + i]])
                for i, n in enumerate(shared)}

    ref, got = {**feeds, **run_marked(fp)}, run_marked(q)
    quantized = [n for n in shared if any(q_ops[n].input_value(i).get_node().get_type_name() == "FakeQuantize"
                                          for i in range(q_ops[n].get_input_size()))]
    local = _local_openvino(core, config, q, quantized, ref)
    return [LayerError(name, _node_name(name), q_ops[name].get_type_name(), name in local,
                       local_rel_l2=local.get(name), **_errors(ref[name], got[name])) for name in shared]


def _constant(node) -> bool:
    """True when no Parameter feeds `node` (a weight, or a decompression chain of one)."""
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if n.get_type_name() == "Parameter":
            return False
        if n.get_name() not in seen:  # get_name() is unique per node; Python wrappers are not
            seen.add(n.get_name())
            stack.extend(n.input_value(i).get_node() for i in range(n.get_input_size()))
    return True


def _local_openvino(core, config: dict[str, Any], quantized_model, names: list[str],
                    ref: dict[str, np.ndarray]) -> dict[str, float]:
    """Local errors of the ops `names`, in one compile: a clone of the quantized model in which every activation
    input of those ops (the input of its FakeQuantize, or the input itself when it has none) reads a new Parameter
    fed the float activation, and every op's output is a Result. Ops with an activation the float model has no
    name for get no figure."""
    import openvino as ov

    model = quantized_model.clone()
    by_name = {o.get_friendly_name(): o for o in model.get_ops()}
    cut: dict[str, Any] = {}  # upstream node name -> its Parameter (one per float activation)
    params, feeds, measured = [], [], []
    for name in names:
        op = by_name[name]
        ports = []
        for i in range(op.get_input_size()):
            source = op.input_value(i).get_node()
            port = source.input(0) if source.get_type_name() == "FakeQuantize" else op.input(i)
            upstream = port.get_source_output()
            if upstream.get_node().get_type_name() == "Parameter" and upstream.get_node().get_name() in cut:
                continue  # already cut loose (an FQ shared with an earlier op)
            if not _constant(upstream.get_node()):
                ports.append((port, upstream))
        values = [ref.get(u.get_node().get_friendly_name()) if u.get_index() == 0 else None for _, u in ports]
        if any(v is None for v in values):
            continue
        for (port, upstream), value in zip(ports, values):
            param = ov.op.Parameter(upstream.get_element_type(), upstream.get_partial_shape())
            port.replace_source_output(param.output(0))
            cut[param.get_name()] = param
            params.append(param)
            feeds.append(value)
        measured.append(op)
    if not measured:
        return {}
    compiled = core.compile_model(ov.Model([op.output(0) for op in measured], params), "CPU", config)
    out = compiled.create_infer_request().infer(dict(enumerate(feeds)))
    return {op.get_friendly_name(): _errors(ref[op.get_friendly_name()], np.array(out[compiled.outputs[i]]))["rel_l2"]
            for i, op in enumerate(measured)}


def localize_model(backend: str, float_onnx: Path, quantized: Path, inputs: dict[str, np.ndarray],
                   threads: int | None = None) -> list[LayerError]:
    """The quantized model on the backend that runs it: an OpenVINO IR on OpenVINO, a Q/DQ ONNX on ONNX Runtime."""
    if backend == "openvino":
        return localize_openvino(float_onnx, quantized, inputs, threads)
    return localize_qdq(float_onnx, quantized, inputs, threads)


def layer_errors(layers: list[LayerError]) -> list[dict[str, Any]]:
    """The report's `layer_errors` (docs/report-schema.md): ranked quantized layers, local and cumulative error."""
    return [{"layer": lay.layer, "op_type": lay.op_type, "rel_l2": lay.local_rel_l2, "cumulative_rel_l2": lay.rel_l2}
            for lay in rank(layers)]


__all__ = ["LayerError", "localize_qdq", "localize_openvino", "localize_model", "layer_errors", "rank"]
