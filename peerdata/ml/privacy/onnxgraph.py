"""Rewrites of a parsed ONNX graph before onnxruntime loads it (pure: protobuf in, protobuf out).

Rule: every rewrite is an algebraic identity, so the rewritten network computes the same function
as the shipped one, up to float rounding (tests/test_privacy_onnxgraph.py compares both on the
real files); the shipped bytes are hashed before any of this runs.

Why: both default networks come from exporters that leave element-wise steps onnxruntime cannot
fuse: PP-OCRv4's learnable scalar affines (y = s * x + b) after most convolutions, hard-swish
spelled as x * clip(x + 3, 0, 6) / 6, and bias and batch norm after transposed convolutions.
Each such step is one more pass over a feature map plus, on the blocked (NCHWc) layout
onnxruntime uses for convolutions, a layout copy out and back in. Folding them into the
convolutions' weights cuts the text detector's time by about a quarter (docs/privacy.md).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper


class _Graph:
    """Producer, users and constant values of a graph, rebuilt after each edit."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.g = model.graph
        self.outputs = {o.name for o in self.g.output}
        self.refresh()

    def refresh(self) -> None:
        self.inits = {t.name: t for t in self.g.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.users: defaultdict[str, list[onnx.NodeProto]] = defaultdict(list)
        for n in self.g.node:
            for i in n.input:
                self.users[i].append(n)
            for o in n.output:
                self.producer[o] = n

    def const(self, name: str) -> np.ndarray | None:
        t = self.inits.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def add_const(self, value: np.ndarray, base: str) -> str:
        name = f"{base}__rewritten{len(self.g.initializer)}"
        self.g.initializer.append(numpy_helper.from_array(
            np.ascontiguousarray(value, dtype=np.float32), name))
        return name

    def only_user(self, name: str) -> onnx.NodeProto | None:
        users = self.users.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None

    def const_operand(self, node: onnx.NodeProto) -> tuple[str, np.ndarray] | None:
        """(tensor input, constant input) of a two-input node with exactly one constant."""
        if len(node.input) != 2:
            return None
        a, b = node.input
        ca, cb = self.const(a), self.const(b)
        if (ca is None) == (cb is None):
            return None
        return (b, ca) if ca is not None else (a, cb)  # type: ignore[return-value]

    def replace(self, old: Iterable[onnx.NodeProto], new: dict[int, list[onnx.NodeProto]]) -> None:
        """Drop `old` nodes; a node whose id is a key of `new` is replaced by that list."""
        gone = {id(n) for n in old}
        kept: list[onnx.NodeProto] = []
        for n in self.g.node:
            if id(n) in new:
                kept += new[id(n)]
            elif id(n) not in gone:
                kept.append(n)
        del self.g.node[:]
        self.g.node.extend(kept)
        self.refresh()


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _weights(g: _Graph, conv: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray] | None:
    w = g.const(conv.input[1])
    if w is None:
        return None
    out_axis = 1 if conv.op_type == "ConvTranspose" else 0
    group = int(_attrs(conv).get("group", 1))  # type: ignore[call-overload]
    channels = w.shape[out_axis] * (group if out_axis == 1 else 1)
    b = g.const(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    return w, (np.zeros(channels, np.float32) if b is None else b.reshape(-1))


def _set_weights(g: _Graph, conv: onnx.NodeProto, w: np.ndarray, b: np.ndarray,
                 x: str | None = None, y: str | None = None) -> None:
    inputs = [x or conv.input[0], g.add_const(w, conv.input[1]), g.add_const(b, conv.input[1])]
    del conv.input[:]
    conv.input.extend(inputs)
    if y is not None:
        del conv.output[:]
        conv.output.append(y)


def constants_to_initializers(model: onnx.ModelProto) -> int:
    """Constant nodes become initializers, so the other rewrites can read their values."""
    g = model.graph
    kept, moved = [], 0
    for n in g.node:
        if n.op_type == "Constant" and len(n.attribute) == 1 and n.attribute[0].name == "value":
            t = onnx.TensorProto()
            t.CopyFrom(n.attribute[0].t)
            t.name = n.output[0]
            g.initializer.append(t)
            moved += 1
        else:
            kept.append(n)
    del g.node[:]
    g.node.extend(kept)
    return moved


def fuse_hardswish(model: onnx.ModelProto) -> int:
    """x * clip(x + 3, 0, 6) / 6  ->  x * hard_sigmoid(x; 1/6, 1/2), which onnxruntime fuses."""
    g = _Graph(model)

    def is_scalar(name: str, value: float) -> bool:
        c = g.const(name)
        return c is not None and c.size == 1 and float(c.reshape(-1)[0]) == value

    old: list[onnx.NodeProto] = []
    new: dict[int, list[onnx.NodeProto]] = {}
    for add in g.g.node:
        if add.op_type != "Add" or len(add.input) != 2 or not is_scalar(add.input[1], 3.0):
            continue
        x = add.input[0]
        clip = g.only_user(add.output[0])
        if (clip is None or clip.op_type != "Clip" or len(clip.input) != 3
                or not is_scalar(clip.input[1], 0.0) or not is_scalar(clip.input[2], 6.0)):
            continue
        mul = g.only_user(clip.output[0])
        if mul is None or mul.op_type != "Mul" or sorted(mul.input) != sorted([x, clip.output[0]]):
            continue
        div = g.only_user(mul.output[0])
        if div is None or div.op_type != "Div" or not is_scalar(div.input[1], 6.0):
            continue
        gate = f"{clip.output[0]}__hard_sigmoid"
        new[id(add)] = [helper.make_node("HardSigmoid", [x], [gate], alpha=1 / 6, beta=0.5),
                        helper.make_node("Mul", [x, gate], [div.output[0]])]
        old += [clip, mul, div]
    g.replace(old, new)
    return len(new)


def fold_transposed_conv_affines(model: onnx.ModelProto) -> int:
    """An ungrouped ConvTranspose followed by a per-channel Add or an inference
    BatchNormalization: into its bias and weights (both act per output channel after it)."""
    g, folded = _Graph(model), 0
    while True:
        for conv in g.g.node:
            grouped = int(_attrs(conv).get("group", 1)) != 1  # type: ignore[call-overload]
            wb = _weights(g, conv) if conv.op_type == "ConvTranspose" and not grouped else None
            nxt = g.only_user(conv.output[0])
            if wb is None or nxt is None:
                continue
            w, b = wb
            channels = b.size
            if nxt.op_type == "Add" and (op := g.const_operand(nxt)) and op[1].size == channels:
                b = b + op[1].reshape(-1)
            elif nxt.op_type == "BatchNormalization" and len(nxt.output) == 1:
                gamma, beta, mean, var = (g.const(i) for i in nxt.input[1:5])
                if any(v is None for v in (gamma, beta, mean, var)):
                    continue
                eps = float(_attrs(nxt).get("epsilon", 1e-5))  # type: ignore[arg-type]
                scale = gamma / np.sqrt(var + eps)  # type: ignore[operator]
                w = w * scale.reshape(1, -1, 1, 1)  # (in, out, kh, kw), group 1
                b = (b - mean) * scale + beta  # type: ignore[operator]
            else:
                continue
            _set_weights(g, conv, w, b, y=nxt.output[0])
            g.replace([nxt], {})
            folded += 1
            break
        else:
            return folded


def fold_scalar_affines(model: onnx.ModelProto) -> Counter[str]:
    """Fold Mul/Add by a constant into the convolution on either side of it.

    After a Conv whose only user it is: w' = s * w, b' = s * b (Mul; s scalar or one value per
    output channel) or b' = b + c (Add). Before a Conv without padding whose only input it is:
    w' = s * w (Mul) or b' = b + c * sum(w) (Add; scalar c). A padded convolution is left
    alone: its zero padding would then be padding of the input before the affine, which differs.
    """
    g, counts = _Graph(model), Counter[str]()
    while True:
        for node in g.g.node:
            op = g.const_operand(node) if node.op_type in ("Mul", "Add") else None
            if op is None:
                continue
            x, c = op
            prev = g.producer.get(x)
            if prev is not None and prev.op_type == "Conv" and g.only_user(x) is node:
                wb = _weights(g, prev)
                if wb is not None and c.size in (1, wb[1].size):
                    w, b = wb
                    flat = c.reshape(-1).astype(np.float32)
                    if node.op_type == "Mul":
                        w, b = w * flat.reshape(-1, 1, 1, 1), b * flat
                    else:
                        b = b + flat
                    _set_weights(g, prev, w, b, y=node.output[0])
                    g.replace([node], {})
                    counts[f"{node.op_type} after Conv"] += 1
                    break
            nxt = g.only_user(node.output[0])
            if (nxt is not None and nxt.op_type == "Conv" and nxt.input[0] == node.output[0]
                    and c.size == 1 and not any(_attrs(nxt).get("pads", [0]))  # type: ignore[arg-type]
                    and _attrs(nxt).get("auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")):
                wb = _weights(g, nxt)
                if wb is not None:
                    w, b = wb
                    s = float(c.reshape(-1)[0])
                    if node.op_type == "Mul":
                        w = w * s
                    else:
                        b = b + s * w.sum(axis=(1, 2, 3))
                    _set_weights(g, nxt, w, b, x=x)
                    g.replace([node], {})
                    counts[f"{node.op_type} before Conv"] += 1
                    break
        else:
            return counts


def scalar_affines_to_depthwise(model: onnx.ModelProto) -> int:
    """A remaining scalar Mul (and the scalar Add after it) on a feature map of C channels
    becomes one 1x1 depthwise Conv: one pass instead of two, and it stays in onnxruntime's
    blocked layout instead of being copied out to NCHW and back."""
    channels = {}
    inferred = onnx.shape_inference.infer_shapes(model)
    for v in [*inferred.graph.value_info, *inferred.graph.output]:
        dims = v.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].dim_value:
            channels[v.name] = dims[1].dim_value
    g = _Graph(model)
    old: list[onnx.NodeProto] = []
    new: dict[int, list[onnx.NodeProto]] = {}
    for mul in g.g.node:
        op = g.const_operand(mul) if mul.op_type == "Mul" else None
        if op is None or op[1].size != 1 or op[0] not in channels:
            continue
        x, s = op
        n_ch = channels[x]
        bias, last = 0.0, mul
        add = g.only_user(mul.output[0])
        if add is not None and add.op_type == "Add":
            add_op = g.const_operand(add)
            if add_op is not None and add_op[1].size == 1:
                bias, last = float(add_op[1].reshape(-1)[0]), add
                old.append(add)
        w = g.add_const(np.full((n_ch, 1, 1, 1), float(s.reshape(-1)[0]), np.float32), x)
        b = g.add_const(np.full((n_ch,), bias, np.float32), x)
        new[id(mul)] = [helper.make_node("Conv", [x, w, b], [last.output[0]], group=n_ch,
                                         kernel_shape=[1, 1])]
    g.replace(old, new)
    return len(new)


def drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    live = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)


def free_input_size(model: onnx.ModelProto) -> None:
    """Weights listed as graph inputs stop being inputs (old exporters list them, which keeps
    onnxruntime from folding batch norms: about half CenterFace's time), and batch, height and
    width of the first input and of every 4-D output become symbolic (CenterFace declares a
    fixed 32x32 input)."""
    g = model.graph
    weights = {t.name for t in g.initializer}
    inputs = [v for v in g.input if v.name not in weights]
    del g.input[:]
    g.input.extend(inputs)
    for value in [*g.input[:1], *g.output]:
        dims = value.type.tensor_type.shape.dim
        for i in (0, 2, 3) if len(dims) == 4 else ():
            dims[i].ClearField("dim_value")
            dims[i].dim_param = f"dim{i}"


def prepare(model: onnx.ModelProto) -> Counter[str]:
    """Every edit above, in order, in place; returns how often each rewrite applied."""
    free_input_size(model)
    counts = Counter[str]()
    counts["constants"] = constants_to_initializers(model)
    counts["hardswish"] = fuse_hardswish(model)
    counts["ConvTranspose affine"] = fold_transposed_conv_affines(model)
    counts.update(fold_scalar_affines(model))
    counts["depthwise affine"] = scalar_affines_to_depthwise(model)
    drop_unused_initializers(model)
    return counts
