"""Merge parallel conv branches over one input into a single conv (RepVGG / YOLOv7 RepConv re-parameterisation).

An Add (or a tree of Adds, or a Sum) whose terms are convs of the SAME tensor x, each optionally followed by a
per-channel affine (BatchNormalization, or the Mul/Add that fold_affine leaves), plus optionally x itself or an
affine of x (the identity branch), is one conv: the convs' kernels are placed in one bigger kernel at the offsets that
line their padding up (3×3 pad 1 + 1×1 pad 0 → 3×3 pad 1), the identity becomes a one-hot centre tap, biases add.

Conditions (else the Add is left alone): same strides, dilations (ignored for 1-tap axes), no auto_pad SAME, paddings
that line up on every axis, equal output channels; grouped convs merge at the gcd of their group counts; the identity
needs stride 1 and C_in == C_out. ConvTranspose branches are not merged. Terms over other tensors stay as Adds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir

from edgedeploy.graph.fold_affine import channel_vector, parse_affine
from edgedeploy.graph.ir import FLOAT_TYPES, Graph, PassStats, attr


@dataclass
class _Term:
    x: ir.Value  # the tensor this term is a function of
    nodes: list[ir.Node] = field(default_factory=list)  # nodes the merge removes
    scale: list[np.ndarray] = field(default_factory=list)  # affines applied after the base, in order
    shift: list[np.ndarray] = field(default_factory=list)
    conv: ir.Node | None = None  # None: identity of x
    weight: np.ndarray | None = None
    bias: np.ndarray | None = None


def _is_sum(g: Graph, node: ir.Node) -> bool:
    """An Add/Sum of tensors (an Add of a constant is an affine, not a sum of branches)."""
    return (
        node.op_type in ("Add", "Sum")
        and node.domain in ("", "ai.onnx")
        and len(node.outputs) == 1
        and all(i is not None and not g.is_constant(i) for i in node.inputs)
    )


def _flatten_sum(g: Graph, root: ir.Node) -> tuple[list[ir.Value], list[ir.Node]]:
    """Leaves of an Add/Sum tree rooted at `root`, and its nodes; inner nodes must feed only the tree."""
    leaves: list[ir.Value] = []
    nodes = [root]
    stack = list(reversed(root.inputs))
    while stack:
        value = stack.pop()
        prod = value.producer()
        if prod is not None and _is_sum(g, prod) and g.sole_user(value) is not None:
            nodes.append(prod)
            stack.extend(reversed(prod.inputs))
        else:
            leaves.append(value)
    return leaves, nodes


def _parse_term(g: Graph, leaf: ir.Value) -> _Term:
    """Walk back from `leaf` through affines read only by the walk, to a conv of x (or stop at x: identity)."""
    affines = []
    nodes: list[ir.Node] = []
    conv = weight = bias = None
    cur = leaf
    while g.sole_user(cur) is not None:
        prod = cur.producer()
        if prod is None:
            break
        aff = parse_affine(g, prod)
        if aff is not None:
            affines.append(aff)
            nodes.append(prod)
            cur = aff.data
            continue
        conv_op = prod.op_type == "Conv" and prod.domain in ("", "ai.onnx")
        if conv_op and len(prod.outputs) == 1 and len(prod.inputs) >= 2 and prod.inputs[0] is not None:
            w = g.constant(prod.inputs[1])
            has_b = len(prod.inputs) > 2 and prod.inputs[2] is not None
            b = g.constant(prod.inputs[2]) if has_b else None
            float_w = w is not None and w.ndim >= 3 and w.dtype in (np.float16, np.float32, np.float64)
            if float_w and (b is not None or not has_b):
                conv, weight, bias = prod, w, b
                nodes.append(prod)
                cur = prod.inputs[0]
        break
    affines.reverse()
    return _Term(
        x=cur,
        nodes=nodes,
        scale=[a.scale for a in affines],
        shift=[a.shift for a in affines],
        conv=conv,
        weight=weight,
        bias=bias,
    )


def _conv_geometry(node: ir.Node, w: np.ndarray):
    nd = w.ndim - 2
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID"):
        return None
    strides = list(attr(node, "strides", None) or [1] * nd)
    dil = list(attr(node, "dilations", None) or [1] * nd)
    pads = list(attr(node, "pads", None) or [0] * (2 * nd)) if auto_pad == "NOTSET" else [0] * (2 * nd)
    ks = attr(node, "kernel_shape", None)
    if ks is not None and list(ks) != list(w.shape[2:]):
        return None
    group = int(attr(node, "group", 1))
    if (len(strides), len(dil), len(pads)) != (nd, nd, 2 * nd) or group < 1 or w.shape[0] % group:
        return None  # malformed: ONNX Runtime refuses it, so there is nothing to merge
    return strides, dil, pads[:nd], pads[nd:]


def _expand_groups(w: np.ndarray, g_from: int, g_to: int) -> np.ndarray:
    """Conv weight with `g_from` groups rewritten for `g_to` groups (g_to divides g_from): zero-filled blocks."""
    if g_from == g_to:
        return w
    o, ipg = w.shape[0], w.shape[1]
    cin = ipg * g_from
    out = np.zeros((o, cin // g_to) + w.shape[2:], dtype=w.dtype)
    opg_from, opg_to, ipg_to = o // g_from, o // g_to, cin // g_to
    for a in range(g_from):
        rows = slice(a * opg_from, (a + 1) * opg_from)
        b = (a * opg_from) // opg_to
        col = a * ipg - b * ipg_to
        out[rows, col : col + ipg] = w[rows]
    return out


def _merge_group(terms: list[_Term], n_dims: int) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """Weight, bias and attributes of one conv equal to the sum of `terms`, or None if they do not line up."""
    convs = [t for t in terms if t.conv is not None]
    o = convs[0].weight.shape[0]
    dtype = convs[0].weight.dtype
    geo: list[tuple] = []  # per term: (kernel, strides, dilations, pads_begin, pads_end, groups)
    for t in terms:
        if t.conv is None:
            geo.append(((1,) * n_dims, None, None, [0] * n_dims, [0] * n_dims, None))
            continue
        gm = _conv_geometry(t.conv, t.weight)
        if gm is None or t.weight.shape[0] != o or t.weight.dtype != dtype or t.weight.ndim != n_dims + 2:
            return None
        strides, dil, pb, pe = gm
        geo.append((tuple(t.weight.shape[2:]), strides, dil, pb, pe, int(attr(t.conv, "group", 1))))
    conv_geo = [gm for gm in geo if gm[1] is not None]
    cin = convs[0].weight.shape[1] * conv_geo[0][5]
    if any(t.weight.shape[1] * gm[5] != cin for t, gm in zip(convs, conv_geo)):
        return None
    strides = conv_geo[0][1]
    if any(gm[1] != strides for gm in conv_geo):
        return None
    has_identity = len(convs) < len(terms)
    if has_identity and (cin != o or any(s != 1 for s in strides)):
        return None
    dil = []  # per axis: the dilation of the multi-tap kernels (a 1-tap axis ignores it)
    for ax in range(n_dims):
        ds = {gm[2][ax] for gm in conv_geo if gm[0][ax] > 1}
        if len(ds) > 1:
            return None
        dil.append(ds.pop() if ds else 1)
    kernel, pads_begin, pads_end = [], [], []
    offsets = [[0] * n_dims for _ in terms]
    for ax in range(n_dims):
        d = dil[ax]
        pb = max(gm[3][ax] for gm in geo)
        for i, gm in enumerate(geo):
            diff = pb - gm[3][ax]
            if diff % d:
                return None
            offsets[i][ax] = diff // d
        k = max(offsets[i][ax] + gm[0][ax] for i, gm in enumerate(geo))
        ends = {gm[4][ax] + (k - gm[0][ax] - offsets[i][ax]) * d for i, gm in enumerate(geo)}
        if len(ends) != 1:
            return None
        kernel.append(k)
        pads_begin.append(pb)
        pads_end.append(ends.pop())
    groups = 0
    for gm in conv_geo:
        groups = math.gcd(groups, gm[5])
    if has_identity:
        groups = math.gcd(groups, cin)
    weight = np.zeros((o, cin // groups) + tuple(kernel), dtype=np.float64)
    bias = np.zeros(o, dtype=np.float64)
    for t, gm, off in zip(terms, geo, offsets):
        if t.conv is not None:
            w = t.weight.astype(np.float64)
            b = np.zeros(o) if t.bias is None else t.bias.astype(np.float64).reshape(-1)
            gr = gm[5]
        else:  # identity: a depthwise one-hot kernel
            w = np.ones((o, 1) + (1,) * n_dims)
            b = np.zeros(o)
            gr = o
        for s_arr, t_arr in zip(t.scale, t.shift):
            s = channel_vector(s_arr, n_dims + 2, 1, o)
            a = channel_vector(t_arr, n_dims + 2, 1, o)
            if s is None or a is None:
                return None
            w = w * s.reshape((-1,) + (1,) * (w.ndim - 1))
            b = b * s + a
        w = _expand_groups(w, gr, groups)
        window = tuple(slice(off[ax], off[ax] + w.shape[2 + ax]) for ax in range(n_dims))
        weight[(slice(None), slice(None)) + window] += w
        bias += b
    attrs = {
        "kernel_shape": kernel,
        "pads": pads_begin + pads_end,
        "strides": strides,
        "dilations": dil,
        "group": groups,
    }
    return weight.astype(dtype), bias.astype(dtype), attrs


def merge_branches(model: onnx.ModelProto) -> tuple[onnx.ModelProto, PassStats]:
    """Rewrite every sum of parallel convs (and identity) over one tensor as one conv. Returns a new model."""
    stats = PassStats("merge_branches")
    g = Graph(model, infer_shapes=True)
    for root in g.nodes:
        if not g.alive(root) or not _is_sum(g, root):
            continue
        out = root.outputs[0]
        user = g.sole_user(out)
        if user is not None and _is_sum(g, user):
            continue  # handled from the top of the tree
        et = g.elem_type(out)
        if et is not None and et not in FLOAT_TYPES:
            continue
        leaves, tree = _flatten_sum(g, root)
        if len(leaves) < 2:
            continue
        terms = [_parse_term(g, leaf) for leaf in leaves]
        by_x: dict[ir.Value, list[int]] = {}
        for i, t in enumerate(terms):
            by_x.setdefault(t.x, []).append(i)
        merged: dict[int, tuple[list[_Term], np.ndarray, np.ndarray, dict]] = {}  # first leaf index -> conv
        dropped: set[int] = set()
        for x, idxs in by_x.items():
            group = [terms[i] for i in idxs]
            convs = [t for t in group if t.conv is not None]
            if len(group) < 2 or not convs or len(convs) < len(group) - 1:
                continue  # nothing to merge, or more than one identity
            if len({id(t.conv) for t in convs}) != len(convs):
                continue  # the same conv reached twice
            result = _merge_group(group, convs[0].weight.ndim - 2)
            if result is None:
                stats.note(f"Add '{root.name}': branches over '{x.name}' do not line up (stride/padding/groups); not merged")
                continue
            merged[idxs[0]] = (group, *result)
            dropped.update(idxs[1:])
        if merged:
            _apply(g, root, tree, leaves, merged, dropped, stats)
    return g.finish(), stats


def _apply(g: Graph, root, tree, leaves, merged, dropped, stats: PassStats) -> None:
    """Replace the Add tree by the merged convs plus an Add chain over the terms that stay."""
    out = root.outputs[0]
    base = root.name or "merged"
    removed = {id(n): n for n in tree}
    for group, *_ in merged.values():
        for t in group:
            removed.update((id(n), n) for n in t.nodes)
    n_left = len(leaves) - len(dropped)
    remaining: list[ir.Value] = []
    for i, leaf in enumerate(leaves):
        if i in dropped:
            continue
        if i not in merged:
            remaining.append(leaf)
            continue
        group, w, b, attrs = merged[i]
        conv_base = next(t.conv.name for t in group if t.conv is not None) or base
        wn = g.add_initializer(w, f"{conv_base}_rep_weight")
        bn = g.add_initializer(b, f"{conv_base}_rep_bias")
        conv = g.add_node("Conv", [group[0].x, wn, bn], out if n_left == 1 else g.fresh(f"{conv_base}_rep"),
                          f"{conv_base}_rep", **attrs)
        if n_left != 1:
            g.copy_type(out, conv)
        remaining.append(conv)
        stats.count("branches_merged", len(group))
        stats.count("convs_created")
    acc = remaining[0]
    for j, nxt in enumerate(remaining[1:]):
        last = j == len(remaining) - 2
        acc_next = g.add_node("Add", [acc, nxt], out if last else g.fresh(f"{base}_sum"), f"{base}_add")
        if not last:
            g.copy_type(out, acc_next)
        acc = acc_next
    g.remove_node(list(removed.values()))


__all__ = ["merge_branches"]
