"""INT8 layer localisation: which layers of a quantized graph lose the accuracy.

Two figures per layer, both against the float graph (deploy.onnx) run by the same backend on the same samples:

- **cumulative** error: the layer's output in the quantized graph vs in the float graph, every intermediate tensor
  marked as an output (ONNX Runtime: graph outputs; OpenVINO: ``Model.add_outputs``). It grows along the graph, so it
  says *where* the error is, not who made it.
- **local** error: the layer alone, quantized as in the quantized graph, fed the *float* graph's activations: the
  error this layer adds by itself. Q/DQ ONNX: the node with its Q/DQ input chains is cut out with onnx's Extractor;
  OpenVINO: a clone of the quantized model in which each activation FakeQuantize feeding the op reads a new
  Parameter. Layers are ranked by local error; only layers with a quantized input are ranked.

Q/DQ layers are matched by node name and compared on the node's own output, not by tensor name: ONNX Runtime's
flavour drops a ReLU/ReLU6/Clip into the next quantizer's range, so its conv writes the clip's tensor name with
unclipped values, which only the float conv's own output matches.

Memory is bounded: the samples run `CHUNK` at a time and each layer's errors are accumulated as sums (squared
reference, squared error, squared candidate, dot product), so only one chunk's intermediate tensors are ever held,
whatever the sample count (a MobileNetV2-like model at 224x224 held 16 samples' tensors of both graphs at once:
+2 GB); OpenVINO, which keeps a buffer per marked output in every request, marks the layers a group at a time
(`_GROUP_BYTES` of outputs per sample).

Caveat (also in docs/precision.md): marking a tensor as an output can stop a backend fusing across it, so the
cumulative figures are those of the same quantization without those fusions; the end-to-end figures in the build's
report are of the real artifact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgedeploy.errors import EdgeDeployError
from edgedeploy.precision.openvino_convert import convert_onnx

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


CHUNK = 2  # samples per run of the marked graphs


class _Sums:
    """Running sums of one layer's comparison over chunks, over the elements finite in both: the rel-L2, SNR and
    cosine of edgedeploy.validate.metrics.compare on the concatenated tensors. Each chunk's dot products run in the
    tensors' own precision (BLAS; float32: ~1e-6 relative, plenty for a ranking) and add up in Python floats: float64
    copies of every intermediate tensor cost 25x the time on a loaded machine."""

    def __init__(self) -> None:
        self.ref = self.err = self.cand = self.dot = 0.0

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        r, c = np.ravel(reference), np.ravel(candidate)
        if r.dtype.kind != "f" or c.dtype.kind != "f":  # a boolean mask or integer index output: compared as numbers
            r, c = r.astype(np.float64), c.astype(np.float64)
        if not (np.isfinite(r.sum()) and np.isfinite(c.sum())):  # the masking pass only where something is not finite
            ok = np.isfinite(r) & np.isfinite(c)
            r, c = r[ok], c[ok]
        d = c - r
        self.ref += float(np.dot(r, r))
        self.err += float(np.dot(d, d))
        self.cand += float(np.dot(c, c))
        self.dot += float(np.dot(r, c))

    def errors(self) -> dict[str, float]:
        tiny = 1e-30
        ref, err, cand = np.sqrt(self.ref), np.sqrt(self.err), np.sqrt(self.cand)
        if ref == 0.0 and err == 0.0:
            rel_l2, cosine = 0.0, 1.0
        else:
            rel_l2, cosine = err / max(ref, tiny), self.dot / max(ref * cand, tiny)
        return {"rel_l2": float(rel_l2), "snr_db": float(20 * np.log10(max(ref, tiny) / max(err, tiny))),
                "cosine": float(cosine)}


def _chunks(inputs: dict[str, np.ndarray], size: int = CHUNK):
    count = len(next(iter(inputs.values())))
    for start in range(0, count, size):
        yield {k: v[start:start + size] for k, v in inputs.items()}


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


def _ort_session(model: onnx.ModelProto, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _ort_run(session, feeds: dict[str, np.ndarray], outputs: list[str]) -> dict[str, np.ndarray]:
    wanted = {i.name for i in session.get_inputs()}
    return dict(zip(outputs, session.run(outputs, {k: v for k, v in feeds.items() if k in wanted})))


class _QdqGraphs:
    """A float graph and its Q/DQ graph, with the Q/DQ graph's layers matched to their float twins: by node name
    (unnamed nodes by output name) and op type, compared on the node's own output (before any output Q/DQ)."""

    def __init__(self, float_onnx: Path, qdq_onnx: Path) -> None:
        self.fp, self.q = onnx.load(str(float_onnx)), onnx.load(str(qdq_onnx))
        by_name = {n.name: n for n in self.fp.graph.node if n.name and n.output}
        by_output = {n.output[0]: n for n in self.fp.graph.node if n.output}

        def twin(node: onnx.NodeProto) -> str | None:
            """The float graph's output for `node`: its same-named node's, else (unnamed nodes) the same tensor's."""
            match = by_name.get(node.name) if node.name else by_output.get(node.output[0])
            return match.output[0] if match is not None and match.op_type == node.op_type else None

        pairs = [(n, twin(n)) for n in self.q.graph.node if n.op_type not in _QDQ and n.output and n.output[0]]
        self.pairs: list[tuple[onnx.NodeProto, str]] = [(n, t) for n, t in pairs if t]
        if not self.pairs:
            raise EdgeDeployError("the quantized graph shares no nodes with the float graph, so its layers "
                                  "cannot be matched", where=str(qdq_onnx), fix="quantize deploy.onnx of this artifact")
        self.producer = {o: n for n in self.q.graph.node for o in n.output}
        self.initializers = {t.name for t in self.q.graph.initializer}
        self.float_tensors = [o for n in self.fp.graph.node for o in n.output if o]

    def quantized(self, node: onnx.NodeProto) -> bool:
        """Whether a DequantizeLinear feeds the node (so keeping it in float can help)."""
        return any(i in self.producer and self.producer[i].op_type == "DequantizeLinear" for i in node.input)

    def sources(self, node: onnx.NodeProto, inputs: dict[str, np.ndarray]) -> list[str]:
        """The float tensors the node's activation inputs start from, before their Q/DQ chains (weights, i.e.
        initializers and constant chains, left out)."""
        known = set(self.float_tensors) | set(inputs)

        def activation(tensor: str) -> str | None:
            while tensor in self.producer and self.producer[tensor].op_type in _QDQ:
                tensor = self.producer[tensor].input[0]
            return tensor if tensor in known and tensor not in self.initializers else None

        return sorted({a for a in map(activation, filter(None, node.input)) if a})


def localize_qdq(float_onnx: Path, qdq_onnx: Path, inputs: dict[str, np.ndarray],
                 threads: int | None = None) -> list[LayerError]:
    """Per-layer errors of a Q/DQ ONNX graph vs its float graph, both on ONNX Runtime (CPU), CHUNK samples at a
    time. Layers are matched by node name (unnamed ones by output name) and compared on the node's own output
    (before any output Q/DQ)."""
    from onnx.utils import Extractor

    graphs = _QdqGraphs(float_onnx, qdq_onnx)
    fp, q = graphs.fp, graphs.q
    extractor = Extractor(onnx.shape_inference.infer_shapes(q))  # it needs the types of what it cuts at
    layers = []  # (node, its float twin's output, local session, its source tensors)
    for node, float_out in graphs.pairs:
        part, sources = None, []
        if graphs.quantized(node):
            sources = graphs.sources(node, inputs)
            part = _ort_session(extractor.extract_model(sources, [node.output[0]]), threads)
        layers.append((node, float_out, part, sources))
    ref_names = sorted({out for _, out, _, _ in layers} | {s for *_, sources in layers for s in sources})
    got_names = [node.output[0] for node, *_ in layers]
    ref_session = _ort_session(_with_outputs(fp, ref_names), threads)
    got_session = _ort_session(_with_outputs(q, got_names), threads)
    cumulative = {_key(node): _Sums() for node, *_ in layers}
    local = {_key(node): _Sums() for node, _, part, _ in layers if part is not None}
    for chunk in _chunks(inputs):
        ref = {**chunk, **_ort_run(ref_session, chunk, ref_names)}
        got = _ort_run(got_session, chunk, got_names)
        for node, float_out, part, sources in layers:
            cumulative[_key(node)].add(ref[float_out], got[node.output[0]])
            if part is not None:
                local[_key(node)].add(ref[float_out], _ort_run(part, {s: ref[s] for s in sources}, [node.output[0]])
                                     [node.output[0]])
        del ref, got
    return [LayerError(_key(node), node.name, node.op_type, part is not None,
                       local_rel_l2=local[_key(node)].errors()["rel_l2"] if part is not None else None,
                       **cumulative[_key(node)].errors()) for node, _, part, _ in layers]


def localize_marked(float_onnx: Path, qdq_onnx: Path, run_marked: Callable[[dict[str, np.ndarray]],
                    dict[str, np.ndarray]], inputs: dict[str, np.ndarray],
                    threads: int | None = None) -> list[LayerError]:
    """Per-layer errors of an engine built from the Q/DQ graph with its layer outputs marked as outputs (TensorRT,
    `edgedeploy debug precision --target trt`): `run_marked(feeds)` returns the engine's outputs by tensor name,
    compared with the float graph on ONNX Runtime (fp32, CPU), CHUNK samples at a time. A layer is a Q/DQ-graph node
    whose output tensor the engine returns, matched to its float twin as localize_qdq matches.

    An engine cannot run one layer alone, so the local figure turns localize_qdq's around: the float graph's part
    from the layer's inputs to its output (the layer, plus any op the Q/DQ graph folded into a quantizer) is fed the
    *engine's* values of those inputs, and the engine's output is compared with it: the error this layer adds on the
    engine. A layer whose inputs the engine did not return gets none."""
    from onnx.utils import Extractor

    graphs = _QdqGraphs(float_onnx, qdq_onnx)
    float_of = {node.output[0]: out for node, out in graphs.pairs}  # an engine tensor -> its float graph tensor
    extractor = Extractor(onnx.shape_inference.infer_shapes(graphs.fp))
    parts = {}  # layer -> (float part, its inputs as (engine tensor, float tensor))
    for node, float_out in graphs.pairs:
        if graphs.quantized(node):
            mapped = [(s, s if s in inputs else float_of.get(s)) for s in graphs.sources(node, inputs)]
            if mapped and all(f is not None for _, f in mapped):
                part = extractor.extract_model(sorted({f for _, f in mapped}), [float_out])
                parts[_key(node)] = (_ort_session(part, threads), mapped)
    ref_names = sorted({out for _, out in graphs.pairs})
    ref_session = _ort_session(_with_outputs(graphs.fp, ref_names), threads)
    cumulative: dict[str, _Sums] = {}
    local: dict[str, _Sums] = {}
    for chunk in _chunks(inputs):
        ref = _ort_run(ref_session, chunk, ref_names)
        got = {**chunk, **run_marked(chunk)}
        for node, float_out in graphs.pairs:
            if node.output[0] not in got:
                continue
            cumulative.setdefault(_key(node), _Sums()).add(ref[float_out], got[node.output[0]])
            part = parts.get(_key(node))
            if part is not None and all(s in got for s, _ in part[1]):
                feeds = {**chunk, **{f: got[s] for s, f in part[1]}}
                local.setdefault(_key(node), _Sums()).add(_ort_run(part[0], feeds, [float_out])[float_out],
                                                          got[node.output[0]])
        del ref, got
    measured = [node for node, _ in graphs.pairs if _key(node) in cumulative]
    if not measured:
        raise EdgeDeployError("the engine returned none of the quantized graph's layer outputs, so no layer can be "
                              "compared", where=str(qdq_onnx), fix="build it with every layer output marked")
    return [LayerError(_key(node), node.name, node.op_type, graphs.quantized(node),
                       local_rel_l2=local[_key(node)].errors()["rel_l2"] if _key(node) in local else None,
                       **cumulative[_key(node)].errors()) for node in measured]


def _key(node: onnx.NodeProto) -> str:
    """A node's name, or for an unnamed node its output's (what identifies it in the report)."""
    return node.name or node.output[0]


# ------------------------------------------------------------------------------------------- OpenVINO
def _node_name(op_name: str) -> str:
    """OpenVINO names a converted Conv's bias-free part `<node>/WithoutBiases`."""
    return op_name.split("/", 1)[0]


def localize_openvino(float_onnx: Path, int8_xml: Path, inputs: dict[str, np.ndarray],
                      threads: int | None = None) -> list[LayerError]:
    """Per-layer errors of an NNCF-quantized IR vs the float model converted from deploy.onnx, both on the OpenVINO
    CPU plugin with the f32 precision hint (so bf16 never blurs the comparison)."""
    import openvino as ov


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
    parameters = [p.get_friendly_name() for p in fp.get_parameters()]

    def marked(model, names: list[str]):
        clone = model.clone()
        by_name = {o.get_friendly_name(): o for o in clone.get_ops()}
        ports = clone.add_outputs([by_name[n].output(0) for n in names])
        compiled = core.compile_model(clone, "CPU", config)
        return compiled.create_infer_request(), compiled.outputs[len(compiled.outputs) - len(ports):]

    quantized = {n for n in shared if any(q_ops[n].input_value(i).get_node().get_type_name() == "FakeQuantize"
                                          for i in range(q_ops[n].get_input_size()))}
    known = set(shared) | set(parameters)
    cumulative = {n: _Sums() for n in shared}
    local: dict[str, _Sums] = {}
    for group in _groups(q_ops, shared):
        # OpenVINO keeps a buffer per marked output in each request: a group's worth at a time
        local_model = _local_openvino(core, config, q, [n for n in group if n in quantized], known)
        sources = [] if local_model is None else [s for s in local_model[2] if s not in parameters]
        ref_names = list(dict.fromkeys(group + sources))
        (ref_request, ref_ports), (got_request, got_ports) = marked(fp, ref_names), marked(q, group)
        local_request = None if local_model is None else local_model[0].create_infer_request()
        for op in (local_model[1] if local_model else []):
            local[op.get_friendly_name()] = _Sums()
        for chunk in _chunks(inputs):
            feeds = {n: chunk[n] for n in parameters}
            result = ref_request.infer(feeds, share_outputs=True)  # views of the request's buffers, read at once
            ref = {**feeds, **{n: result[port] for n, port in zip(ref_names, ref_ports)}}
            result = got_request.infer(feeds, share_outputs=True)
            for n, port in zip(group, got_ports):
                cumulative[n].add(ref[n], result[port])
            if local_request is not None:
                compiled, ops_, all_sources = local_model
                out = local_request.infer({i: ref[s] for i, s in enumerate(all_sources)}, share_outputs=True)
                for i, op in enumerate(ops_):
                    local[op.get_friendly_name()].add(ref[op.get_friendly_name()], out[compiled.outputs[i]])
        del ref_request, got_request, local_request, local_model
    return [LayerError(name, _node_name(name), q_ops[name].get_type_name(), name in local,
                       local_rel_l2=local[name].errors()["rel_l2"] if name in local else None,
                       **cumulative[name].errors()) for name in shared]


_GROUP_BYTES = 64 << 20  # float32 outputs of one sample marked per compiled model


def _groups(ops: dict[str, Any], names: list[str], limit: int = _GROUP_BYTES) -> list[list[str]]:
    """`names` in graph order, cut into runs whose outputs hold at most `limit` bytes per sample (a dynamic dimension
    counts as 1, the batch)."""
    groups: list[list[str]] = [[]]
    size = 0
    for name in names:
        shape = ops[name].get_output_partial_shape(0)
        nbytes = 4 * int(np.prod([d.get_length() if d.is_static else 1 for d in shape])) if shape.rank.is_static \
            else 0
        if groups[-1] and size + nbytes > limit:
            groups.append([])
            size = 0
        groups[-1].append(name)
        size += nbytes
    return [g for g in groups if g]


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


def _local_openvino(core, config: dict[str, Any], quantized_model, names: list[str], known: set[str]):
    """One compiled model that gives the local errors of the ops `names`: a clone of the quantized model in which
    every activation input of those ops (the input of its FakeQuantize, or the input itself when it has none) reads a
    new Parameter fed the float activation, and every op's output is a Result. Returns (compiled model, the measured
    ops, the float tensor each Parameter reads, in order), or None; ops with an activation the float model has no
    name for (not in `known`) get no figure."""
    import openvino as ov

    model = quantized_model.clone()
    by_name = {o.get_friendly_name(): o for o in model.get_ops()}
    cut: dict[str, Any] = {}  # upstream node name -> its Parameter (one per float activation)
    params, sources, measured = [], [], []
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
        names_in = [u.get_node().get_friendly_name() if u.get_index() == 0 else None for _, u in ports]
        if any(n not in known for n in names_in):
            continue
        for (port, upstream), source_name in zip(ports, names_in):
            param = ov.op.Parameter(upstream.get_element_type(), upstream.get_partial_shape())
            port.replace_source_output(param.output(0))
            cut[param.get_name()] = param
            params.append(param)
            sources.append(source_name)
        measured.append(op)
    if not measured:
        return None
    compiled = core.compile_model(ov.Model([op.output(0) for op in measured], params), "CPU", config)
    return compiled, measured, sources


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


__all__ = ["LayerError", "localize_qdq", "localize_marked", "localize_openvino", "localize_model", "layer_errors",
           "rank"]
