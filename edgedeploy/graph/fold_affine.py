"""Fold per-channel affines (BatchNormalization, Mul/Add/Sub/Div by a constant) into adjacent linear ops.

One pass, driven to a fixed point (after bypassing Identity nodes, which would hide a neighbour):

1. every inference-form BatchNormalization becomes Mul(s) + Add(t), s = γ/√(σ²+ε), t = β − μ·s (its own ε);
2. chains of constant affines collapse into one canonical Mul → Add;
3. an affine AFTER a Conv / ConvTranspose / Gemm / MatMul (constant weight, whose output nothing else reads) folds
   into its weight and bias: W'[c] = s[c]·W[c], b'[c] = s[c]·b[c] + t[c];
4. an affine BEFORE one of them folds into it where that is exact: a scale always (0·m = 0 keeps zero padding
   exact), a shift into the bias only when the op pads nothing (b'[o] = b[o] + Σ W[o,i,k]·a[i]); ConvTranspose and
   MatMul take scales only (their shift would vary over the output / needs a bias they do not have).

Whatever cannot fold stays as one Mul and one Add, which is exact. BatchNormalization in training form (more than
one output) and BatchNormalization whose input rank is unknown are left unchanged and reported. All arithmetic is
done in float64 and written back in the weight's own dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir

from edgedeploy.graph.ir import FLOAT_TYPES, Graph, PassStats, attr, set_attr

LINEAR_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
_MAX_ROUNDS = 10_000
_BN_TAG = "edgedeploy: BatchNormalization as Mul+Add: "


@dataclass
class Affine:
    """y = x·scale + shift, with constants broadcast the ONNX way (right-aligned)."""

    node: ir.Node
    data: ir.Value  # the non-constant input x
    scale: np.ndarray  # float64
    shift: np.ndarray  # float64
    dtype: np.dtype  # the dtype the constants must be written in

    @property
    def output(self) -> ir.Value:
        return self.node.outputs[0]

    @property
    def has_scale(self) -> bool:
        return not bool(np.all(self.scale == 1.0))

    @property
    def has_shift(self) -> bool:
        return not bool(np.all(self.shift == 0.0))


def parse_affine(g: Graph, node: ir.Node, stats: PassStats | None = None) -> Affine | None:
    """Read `node` as a constant float affine of one tensor, or None.

    BatchNormalization is read with its per-channel vectors shaped (C, 1, …, 1) for its input's rank, so it needs
    that rank; Mul/Add/Sub/Div need exactly one constant input.
    """
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return None
    if op == "BatchNormalization":
        return _parse_bn(g, node, stats)
    if op not in ("Mul", "Add", "Sub", "Div") or len(node.inputs) != 2 or len(node.outputs) != 1:
        return None
    a, b = node.inputs
    if a is None or b is None:
        return None
    ca, cb = g.exact(a), g.exact(b)
    if (ca is None) == (cb is None):
        return None
    const = ca if ca is not None else cb
    data = b if ca is not None else a
    if const.dtype not in (np.float16, np.float32, np.float64):
        return None
    stored = g.constant(a if ca is not None else b)
    dtype = stored.dtype if stored is not None else const.dtype
    c = const.astype(np.float64)
    one, zero = np.ones((), np.float64), np.zeros((), np.float64)
    if op == "Mul":
        return Affine(node, data, c, zero, dtype)
    if op == "Add":
        return Affine(node, data, one, c, dtype)
    if op == "Sub":
        if ca is None:  # x - c
            return Affine(node, data, one, -c, dtype)
        return Affine(node, data, -one, c, dtype)  # c - x
    if op == "Div" and ca is None and np.all(c != 0):  # x / c
        return Affine(node, data, 1.0 / c, zero, dtype)
    return None


def _parse_bn(g: Graph, node: ir.Node, stats: PassStats | None) -> Affine | None:
    if len([o for o in node.outputs if o.name]) != 1 or attr(node, "training_mode", 0):
        if stats is not None:
            stats.note(f"BatchNormalization '{node.name}' is in training form (running-stat outputs); left unchanged")
        return None
    x = node.inputs[0]
    if len(node.inputs) != 5 or x is None or attr(node, "spatial", 1) != 1:
        return None  # opset < 9 per-element (spatial=0) form: not a per-channel affine
    params = [g.exact(n) for n in node.inputs[1:5]]
    if any(p is None or p.ndim != 1 or p.dtype.kind != "f" for p in params):
        return None
    if len({p.size for p in params}) != 1:
        if stats is not None:  # a malformed node: ONNX Runtime refuses it, and the verification says so
            stats.note(f"BatchNormalization '{node.name}': scale/B/mean/var have lengths {[p.size for p in params]}; "
                       "left unchanged")
        return None
    rank = channel_rank(g, x)
    if rank is None or rank < 2:
        if stats is not None:
            stats.note(f"BatchNormalization '{node.name}': rank of '{x}' unknown; left unchanged")
        return None
    gamma, beta, mean, var = (p.astype(np.float64).reshape(-1) for p in params)
    eps = float(attr(node, "epsilon", 1e-5))
    s = gamma / np.sqrt(var + eps)
    t = beta - mean * s
    shape = (-1,) + (1,) * (rank - 2)
    et = g.elem_type(x)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(et) if et in FLOAT_TYPES else g.constant(node.inputs[1]).dtype
    return Affine(node, x, s.reshape(shape), t.reshape(shape), np.dtype(dtype))


def channel_rank(g: Graph, value: ir.Value) -> int | None:
    """Rank of `value`, from shape inference or, for a Conv output, from its weight."""
    r = g.rank(value)
    if r is not None:
        return r
    prod = value.producer()
    if prod is not None and prod.op_type in ("Conv", "ConvTranspose") and len(prod.inputs) > 1:
        w = g.constant(prod.inputs[1])
        if w is not None:
            return w.ndim
    return None


def channel_vector(c: np.ndarray, rank: int | None, axis: int, n: int) -> np.ndarray | None:
    """`c` as an (n,) vector if, broadcast against a rank-`rank` tensor, it varies only along `axis` (size n or 1)
    and does not grow the tensor's rank; else None. `axis` may be negative. A scalar fits any rank."""
    if c.ndim == 0:
        return np.full(n, float(c))
    if rank is None or c.ndim > rank:
        return None
    axis = axis % rank
    shape = (1,) * (rank - c.ndim) + tuple(c.shape)
    if any(d != 1 for i, d in enumerate(shape) if i != axis) or shape[axis] not in (1, n):
        return None
    return np.broadcast_to(c.reshape(-1), (n,)).astype(np.float64)


def _float_tensor(g: Graph, value: ir.Value) -> bool:
    et = g.elem_type(value)
    return et is None or et in FLOAT_TYPES


# -------------------------------------------------------------------------------------------- linear op views


@dataclass
class _Linear:
    """A linear op with constant weight, seen as out = W·in (+ b) with explicit channel bookkeeping."""

    node: ir.Node
    weight: np.ndarray  # float64 where this pass computed it, else as stored
    bias: np.ndarray | None
    dtype: np.dtype  # the stored dtype

    @property
    def op(self) -> str:
        return self.node.op_type


def _linear(g: Graph, node: ir.Node) -> _Linear | None:
    if node.op_type not in LINEAR_OPS or node.domain not in ("", "ai.onnx"):
        return None
    if len(node.inputs) < 2 or len(node.outputs) != 1 or node.inputs[0] is None:
        return None
    stored = g.constant(node.inputs[1])
    if stored is None or stored.dtype not in (np.float16, np.float32, np.float64):
        return None
    w = g.exact(node.inputs[1])
    bias = None
    if node.op_type != "MatMul" and len(node.inputs) > 2 and node.inputs[2] is not None:
        stored_b = g.constant(node.inputs[2])
        if stored_b is None or stored_b.dtype != stored.dtype:
            return None
        bias = g.exact(node.inputs[2])
    if node.op_type in ("Conv", "ConvTranspose"):
        group = _groups(node)  # must divide the weight's first axis: Conv's out channels, ConvTranspose's in channels
        if w.ndim < 3 or group < 1 or w.shape[0] % group:
            return None
    if node.op_type in ("Gemm", "MatMul") and w.ndim != 2:
        return None
    return _Linear(node, w, bias, stored.dtype)


def _groups(node: ir.Node) -> int:
    return int(attr(node, "group", 1))


def _out_channels(lin: _Linear) -> int:
    w, node = lin.weight, lin.node
    if lin.op == "Conv":
        return w.shape[0]
    if lin.op == "ConvTranspose":
        return w.shape[1] * _groups(node)
    if lin.op == "Gemm":
        return w.shape[0] if attr(node, "transB", 0) else w.shape[1]
    return w.shape[1]  # MatMul


def _in_channels(lin: _Linear) -> int:
    w, node = lin.weight, lin.node
    if lin.op == "Conv":
        return w.shape[1] * _groups(node)
    if lin.op == "ConvTranspose":
        return w.shape[0]
    if lin.op == "Gemm":
        return w.shape[1] if attr(node, "transB", 0) else w.shape[0]
    return w.shape[0]  # MatMul


def pads_zero(node: ir.Node, kernel: tuple[int, ...]) -> bool:
    """Whether a Conv reads no padding at all (so a constant added to its input stays constant under the kernel)."""
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad == "VALID":
        return True
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return all(k == 1 for k in kernel)
    return all(p == 0 for p in attr(node, "pads", []) or [])


def _write_linear(g: Graph, lin: _Linear, weight: np.ndarray, bias: np.ndarray | None) -> None:
    node = lin.node
    dt = lin.dtype
    g.set_constant_input(node, 1, weight.astype(dt), f"{node.name or 'linear'}_weight", exact=weight)
    if bias is not None:
        g.set_constant_input(node, 2, np.asarray(bias).astype(dt), f"{node.name or 'linear'}_bias", exact=bias)


# -------------------------------------------------------------------------------------------- the folds


def _fold_after(g: Graph, aff: Affine, stats: PassStats) -> bool:
    """Affine directly after a linear op whose output nothing else reads."""
    prod = aff.data.producer()
    if prod is None or g.sole_user(aff.data) is not aff.node:
        return False
    lin = _linear(g, prod)
    if lin is None:
        return False
    n_out = _out_channels(lin)
    if lin.op in ("Conv", "ConvTranspose"):
        rank, axis = lin.weight.ndim, 1
    elif lin.op == "Gemm":
        rank, axis = 2, 1
    else:
        rank, axis = g.rank(aff.data), -1
        if rank is None and aff.scale.ndim <= 1 and aff.shift.ndim <= 1:
            rank = max(aff.scale.ndim, aff.shift.ndim, 1)
    s = channel_vector(aff.scale, rank, axis, n_out)
    t = channel_vector(aff.shift, rank, axis, n_out)
    if s is None or t is None:
        return False
    w = lin.weight.astype(np.float64)
    b = None if lin.bias is None else lin.bias.astype(np.float64)
    node = lin.node
    if lin.op == "Conv":
        w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
        b = t + s * (0.0 if b is None else b)
        _write_linear(g, lin, w, b)
    elif lin.op == "ConvTranspose":
        grp = _groups(node)
        cin, cpg = w.shape[0], w.shape[1]
        wg = w.reshape((grp, cin // grp, cpg) + w.shape[2:])
        wg = wg * s.reshape((grp, 1, cpg) + (1,) * (w.ndim - 2))
        w = wg.reshape(w.shape)
        b = t + s * (0.0 if b is None else b)
        _write_linear(g, lin, w, b)
    elif lin.op == "Gemm":
        w = w * (s[:, None] if attr(node, "transB", 0) else s[None, :])
        if b is None and not aff.has_shift:
            _write_linear(g, lin, w, None)
        else:
            c = float(attr(node, "beta", 1.0)) * (0.0 if b is None else b)
            c = np.asarray(c * s + t) if b is not None else t
            _write_linear(g, lin, w, c)
            set_attr(node, "beta", 1.0)
    else:  # MatMul has no bias: fold the scale, keep the shift as an Add
        if not aff.has_scale:
            return False
        _write_linear(g, lin, w * s[None, :], None)
        if aff.has_shift:
            shift = g.add_initializer(t.astype(aff.dtype), f"{node.name or 'matmul'}_shift", exact=t)
            g.add_node("Add", [aff.data, shift], aff.output, f"{node.name or 'matmul'}_shift")
            g.remove_node(aff.node)
            stats.count("folded_after_linear")
            return True
    g.take_over(aff.output, node.outputs[0])
    g.remove_node(aff.node)
    stats.count("folded_after_linear")
    return True


def _fold_before(g: Graph, aff: Affine, stats: PassStats) -> bool:
    """Affine directly before a linear op (as its data input), where exact."""
    user = g.sole_user(aff.output)
    if user is None or user.inputs[0] is not aff.output:
        return False
    lin = _linear(g, user)
    if lin is None:
        return False
    n_in = _in_channels(lin)
    node = lin.node
    if lin.op in ("Conv", "ConvTranspose"):
        rank, axis = lin.weight.ndim, 1
    elif lin.op == "Gemm":
        rank, axis = 2, (0 if attr(node, "transA", 0) else 1)
    else:
        rank, axis = g.rank(aff.output), -1
        if rank is None and aff.scale.ndim <= 1 and aff.shift.ndim <= 1:
            rank = 1
    m = channel_vector(aff.scale, rank, axis, n_in)
    a = channel_vector(aff.shift, rank, axis, n_in)
    if m is None or a is None:
        return False
    # The constant must not be what gives x the op's input shape: x must already have the op's rank, and its
    # channel count (x with 1 channel times a (1,C,1,1) constant has C channels, and the op reads C).
    xs = g.shape(aff.data)
    for c in (aff.scale, aff.shift):
        if c.ndim and c.ndim >= rank and (xs is None or len(xs) != rank):
            return False
        if c.size > 1 and n_in > 1 and (xs is None or len(xs) != rank or xs[axis % rank] != n_in):
            return False
    w = lin.weight.astype(np.float64)
    b = None if lin.bias is None else lin.bias.astype(np.float64)
    if lin.op == "Conv":
        grp = _groups(node)
        o, ipg = w.shape[0], w.shape[1]
        kernel = tuple(w.shape[2:])
        if aff.has_shift and not pads_zero(node, kernel):
            return False
        wg = w.reshape((grp, o // grp, ipg, -1))  # (g, O/g, I/g, K)
        ag = a.reshape(grp, ipg)
        if aff.has_shift:
            extra = np.einsum("gojk,gj->go", wg, ag).reshape(o)
            b = extra if b is None else b + extra
        w = (wg * m.reshape(grp, 1, ipg, 1)).reshape(w.shape)
        _write_linear(g, lin, w, b)
    elif lin.op == "ConvTranspose":
        if aff.has_shift:
            return False
        w = w * m.reshape((-1,) + (1,) * (w.ndim - 1))
        _write_linear(g, lin, w, None)
    elif lin.op == "Gemm":
        trans_b = attr(node, "transB", 0)
        b_eff = w.T if trans_b else w  # (K, N)
        if aff.has_shift:
            extra = float(attr(node, "alpha", 1.0)) * (a @ b_eff)
            c = extra if b is None else float(attr(node, "beta", 1.0)) * b + extra
            b = np.asarray(c)
            set_attr(node, "beta", 1.0)
        w = w * (m[None, :] if trans_b else m[:, None])
        _write_linear(g, lin, w, b)
    else:  # MatMul
        if aff.has_shift:
            return False
        _write_linear(g, lin, w * m[:, None], None)
    g.set_input(node, 0, aff.data)
    g.remove_node(aff.node)
    stats.count("folded_before_linear")
    return True


def _merge_chain(g: Graph, aff: Affine, stats: PassStats) -> bool:
    """Two affines in a row become one Mul → Add (skipped when already in that form)."""
    nxt_node = g.sole_user(aff.output)
    if nxt_node is None:
        return False
    nxt = parse_affine(g, nxt_node)
    if nxt is None or nxt.data is not aff.output or nxt.dtype != aff.dtype:
        return False
    if aff.node.op_type == "Mul" and not aff.has_shift and nxt.node.op_type == "Add" and not nxt.has_scale:
        return False  # already canonical
    try:
        full = np.broadcast_shapes(aff.scale.shape, aff.shift.shape, nxt.scale.shape, nxt.shift.shape)
    except ValueError:
        return False
    if sum(d != 1 for d in full) > 1:
        return False  # would materialise a big constant
    s = aff.scale * nxt.scale
    t = aff.shift * nxt.scale + nxt.shift
    out = nxt.output
    base = aff.node.name or "affine"
    doc = aff.node.doc_string or nxt.node.doc_string
    has_s, has_t = not np.all(s == 1.0), not np.all(t == 0.0)
    cur = aff.data
    if has_s or not has_t:
        const = np.broadcast_to(s, full if not has_t else s.shape)
        scale = g.add_initializer(const.astype(aff.dtype), f"{base}_scale", exact=const)
        cur = g.add_node("Mul", [cur, scale], g.fresh(f"{base}_scaled") if has_t else out, f"{base}_mul", doc=doc)
        if has_t:
            g.copy_type(out, cur)
    if has_t:
        const = np.broadcast_to(t, full if not has_s else t.shape)
        shift = g.add_initializer(const.astype(aff.dtype), f"{base}_shift", exact=const)
        g.add_node("Add", [cur, shift], out, f"{base}_add", doc=doc)
    g.remove_node([nxt.node, aff.node])
    stats.count("affines_merged")
    return True


def _bn_to_mul_add(g: Graph, aff: Affine, stats: PassStats) -> None:
    bn = aff.node
    base = bn.name or "bn"
    out = aff.output
    s = g.add_initializer(aff.scale.astype(aff.dtype), f"{base}_scale", exact=aff.scale)
    t = g.add_initializer(aff.shift.astype(aff.dtype), f"{base}_shift", exact=aff.shift)
    doc = f"{_BN_TAG}{bn.name or out.name}"
    mid = g.add_node("Mul", [aff.data, s], g.fresh(f"{base}_scaled"), f"{base}_mul", doc=doc)
    g.copy_type(out, mid)
    g.add_node("Add", [mid, t], out, f"{base}_add", doc=doc)
    g.remove_node(bn)
    stats.count("batchnorm_rewritten")


def _drop_identities(g: Graph, stats: PassStats) -> None:
    """Identity nodes between ops (Paddle2ONNX writes hundreds) would hide a conv's neighbour: readers read the
    Identity's input instead (subgraph readers too). One whose output is a graph output (its name is the interface)
    stays."""
    for node in g.nodes:
        if node.op_type != "Identity" or node.domain not in ("", "ai.onnx") or len(node.inputs) != 1:
            continue
        out, src = node.outputs[0], node.inputs[0]
        if src is None or g.is_output(out):
            continue
        ir.convenience.replace_all_uses_with(out, src)
        g.remove_node(node)
        stats.count("identities_removed")


def fold_affine(model: onnx.ModelProto) -> tuple[onnx.ModelProto, PassStats]:
    """Fold BatchNormalization and constant Mul/Add/Sub/Div into neighbouring Conv/ConvTranspose/Gemm/MatMul where
    exact; leave every other BatchNormalization as one Mul + Add. Returns a new model and what was done."""
    stats = PassStats("fold_affine")
    g = Graph(model, infer_shapes=True)
    _drop_identities(g, stats)
    for node in g.nodes:
        if node.op_type == "BatchNormalization":
            aff = parse_affine(g, node, stats)
            if aff is not None and _float_tensor(g, aff.data):
                _bn_to_mul_add(g, aff, stats)
    for _ in range(_MAX_ROUNDS):
        progressed = False
        for node in g.nodes:
            if not g.alive(node):
                continue
            aff = parse_affine(g, node)
            if aff is None or not _float_tensor(g, aff.data):
                continue
            if _fold_after(g, aff, stats) or _fold_before(g, aff, stats) or _merge_chain(g, aff, stats):
                progressed = True
        if not progressed:
            break
    out = g.finish()
    left = sum(1 for n in out.graph.node if n.op_type == "BatchNormalization")
    if left:
        stats.note(f"{left} BatchNormalization node(s) left unchanged")
    kept = sorted({n.doc_string[len(_BN_TAG):] for n in out.graph.node if n.doc_string.startswith(_BN_TAG)})
    if kept:
        stats.note(
            f"{len(kept)} BatchNormalization node(s) could not fold into a neighbour (an activation between, a padded "
            f"conv after, or an output read elsewhere) and remain as Mul/Add: {', '.join(kept[:10])}"
            + (" ..." if len(kept) > 10 else "")
        )
    return out, stats


__all__ = ["Affine", "fold_affine", "parse_affine", "channel_vector", "channel_rank", "pads_zero"]
