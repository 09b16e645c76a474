"""What is in the ONNX graph, and what really runs in int8: groups, MACs, kernels, the op table.

* **Groups** (the unit of ``keep_float`` and of the sensitivity analysis), from node names that
  ``export.py`` gives every weight-bearing node: ``subsampling.conv``, ``subsampling.out``,
  ``layers.<i>.ffn1``, ``layers.<i>.attn`` (q/k/v + output projections), ``layers.<i>.conv``
  (the two pointwise convs), ``layers.<i>.ffn2``, ``ctc_head``.
* **MACs** per node are counted from the tensor shapes the fp32 graph really produces on a
  reference input (``measure_macs``).
* **Kernels** come from ORT's *optimized* graph (``SessionOptions.optimized_model_filepath``), the
  graph the CPU provider executes: a node counts as int8 only when its quantized weight feeds an
  integer kernel (``DynamicQuantizeMatMul``, ``MatMulInteger``, ``QLinearMatMul``, ``QLinearConv``,
  ``ConvInteger`` ...). A weight that is dequantized back to float before a float MatMul/Conv
  (fake quantization) is reported float.
"""
from __future__ import annotations

import fnmatch
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from asr_tune.errors import QuantizationError

INT8_KERNELS = {"DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat", "QLinearMatMul",
                "QLinearConv", "ConvInteger", "QGemm", "QAttention", "DynamicQuantizeLSTM"}
COMPUTE_OPS = ("MatMul", "Conv", "Gemm")

_GROUP_RULES = [
    (re.compile(r"^convs\.\d+$"), "subsampling.conv", "subsampling Conv2d 3x3 stride 2"),
    (re.compile(r"^sub_out$"), "subsampling.out", "Linear (subsampling output)"),
    (re.compile(r"^layers\.(\d+)\.(ffn[12])\.fc[12]$"), "layers.{0}.{1}", "Linear (feed-forward)"),
    (re.compile(r"^layers\.(\d+)\.attn\.in_proj$"), "layers.{0}.attn", "Linear (attention q/k/v projection)"),
    (re.compile(r"^layers\.(\d+)\.attn\.out_proj$"), "layers.{0}.attn", "Linear (attention output projection)"),
    (re.compile(r"^layers\.(\d+)\.conv\.pw[12]$"), "layers.{0}.conv", "pointwise Conv1d (as MatMul)"),
    (re.compile(r"^ctc_head$"), "ctc_head", "Linear (CTC head)"),
]

WHY_FLOAT = {
    "attn_scores": "activation x activation product (Q.K^T, P.V): no weights to compress; ORT dynamic "
                   "quantization only handles constant-weight MatMul, kept float in static mode too "
                   "so the softmax sees full-precision scores",
    "depthwise": "depthwise Conv1d (BatchNorm folded in): ~1% of MACs; per-channel 1-D kernel, no "
                 "fast int8 depthwise path behind ORT ConvInteger",
    "LayerNormalization": "normalisation statistics need float range; ORT has no int8 LayerNorm kernel",
    "SkipLayerNormalization": "normalisation statistics need float range; ORT has no int8 LayerNorm kernel",
    "Softmax": "exp + normalisation in float (attention probabilities)",
    "LogSoftmax": "CTC log-posteriors are produced in float",
    "Sigmoid": "SiLU/GLU gates: element-wise, no MACs, float",
    "Relu": "element-wise, no MACs, float",
    "Add": "residual/bias additions: element-wise, float",
    "Mul": "element-wise scaling/gating, float",
}


@dataclass
class ComputeNode:
    name: str
    op_type: str
    kind: str
    group: str | None  # None: never quantized (attention scores, depthwise conv)
    weight: str | None


def compute_nodes(model: onnx.ModelProto) -> list[ComputeNode]:
    """Every MAC-bearing node of the exported graph, with its group and kind."""
    inits = {i.name for i in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        weight = node.input[1] if len(node.input) > 1 and node.input[1] in inits else None
        group, kind = None, "MatMul"
        for rx, grp, k in _GROUP_RULES:
            m = rx.match(node.name)
            if m and weight:
                group, kind = grp.format(*m.groups()), k
                if grp == "subsampling.conv" and node.op_type == "MatMul":
                    kind += " (im2col + MatMul)"
                break
        else:
            if node.name.endswith(".conv.dw"):
                kind = "depthwise Conv1d"
            elif "/attn/" in node.name and weight is None:
                kind = "attention scores MatMul (activation x activation)"
            elif weight is not None:
                raise QuantizationError(f"unexpected weight-bearing node {node.name!r} in the exported graph")
        out.append(ComputeNode(node.name, node.op_type, kind, group, weight))
    return out


def list_groups(nodes: list[ComputeNode]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for n in nodes:
        if n.group:
            groups.setdefault(n.group, []).append(n.name)
    return groups


def expected_groups(num_layers: int) -> list[str]:
    """The groups ``compute_nodes`` finds in an exported model with ``num_layers`` conformer layers."""
    return ["subsampling.conv", "subsampling.out",
            *[f"layers.{i}.{p}" for i in range(num_layers) for p in ("ffn1", "attn", "conv", "ffn2")],
            "ctc_head"]


def resolve_keep_float(patterns: list[str], groups: list[str]) -> list[str]:
    """Group names matching ``patterns`` (exact or fnmatch globs like ``layers.*.attn``)."""
    keep: list[str] = []
    for pat in patterns:
        hit = [g for g in groups if fnmatch.fnmatchcase(g, pat)]
        if not hit:
            raise QuantizationError(f"keep_float: {pat!r} matches no group; groups are: {', '.join(groups)}")
        keep += [g for g in hit if g not in keep]
    return keep


def measure_macs(fp32_path: str | Path, n_mels: int, frames: int) -> dict[str, int]:
    """Multiply-accumulates of each compute node for one utterance of ``frames`` feature frames."""
    import onnxruntime as ort

    model = onnx.load(str(fp32_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    wanted = []
    for node in model.graph.node:
        if node.op_type in COMPUTE_OPS:
            wanted += [t for t in (node.input[0], node.output[0]) if t not in inits]
    have = {o.name for o in model.graph.output}
    for t in dict.fromkeys(wanted):
        if t not in have:
            model.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feats = np.random.default_rng(0).standard_normal((1, frames, n_mels)).astype(np.float32)
    names = [o.name for o in sess.get_outputs()]
    shapes = {n: v.shape for n, v in zip(names, sess.run(None, {"feats": feats,
                                                                 "lengths": np.array([frames])}))}
    macs: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in COMPUTE_OPS:
            continue
        out_shape = shapes[node.output[0]]
        if node.op_type == "Conv":
            w = inits[node.input[1]]
            macs[node.name] = int(np.prod(out_shape)) * int(np.prod(w.shape[1:]))
        else:
            a = shapes.get(node.input[0]) if node.input[0] not in inits else inits[node.input[0]].shape
            macs[node.name] = int(np.prod(out_shape)) * int(a[-1])
    return macs


def int8_kernels(model_path: str | Path, nodes: list[ComputeNode], threads: int = 1) -> dict[str, str]:
    """``node name -> op type that consumes its weight`` in ORT's optimized CPU graph."""
    from asr_tune.quant.runtime import make_session

    with tempfile.TemporaryDirectory(prefix="asr_tune_opt_") as tmp:
        opt = Path(tmp) / "optimized.onnx"
        make_session(model_path, threads, optimized_path=opt)
        graph = onnx.load(str(opt)).graph
    consumers: dict[str, str] = {}
    for node in graph.node:
        for inp in node.input:
            consumers.setdefault(inp, node.op_type)
    kernels: dict[str, str] = {}
    for n in nodes:
        if n.weight is None:
            continue
        q = consumers.get(f"{n.weight}_quantized")
        if q is not None:
            kernels[n.name] = q  # the integer (or dequantizing) op reading the int8 weight
        else:
            kernels[n.name] = consumers.get(n.weight, n.op_type)
    return kernels


@dataclass
class OpEntry:
    name: str
    group: str | None
    kind: str
    precision: str  # "int8" | "float"
    kernel: str
    macs: int
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def op_table(model: onnx.ModelProto, nodes: list[ComputeNode], macs: dict[str, int],
             kernels: dict[str, str], kept: dict[str, str], mode: str) -> list[OpEntry]:
    """Per-node table for MAC-bearing ops plus one row per (scope, op type) for the float rest."""
    act = "activations uint8 quantized at run time per tensor" if mode == "dynamic" else \
        "activations uint8 with calibrated per-tensor ranges"
    rows: list[OpEntry] = []
    for n in nodes:
        kernel = kernels.get(n.name, n.op_type)
        if n.group is None:
            why = WHY_FLOAT["depthwise"] if n.kind.startswith("depthwise") else WHY_FLOAT["attn_scores"]
            rows.append(OpEntry(n.name, None, n.kind, "float", kernel, macs.get(n.name, 0), why))
        elif n.group in kept:
            rows.append(OpEntry(n.name, n.group, n.kind, "float", kernel, macs.get(n.name, 0), kept[n.group]))
        elif kernel in INT8_KERNELS:
            note = "; input quantized once before the im2col copies" if "im2col" in n.kind and mode == "dynamic" else ""
            rows.append(OpEntry(n.name, n.group, n.kind, "int8", kernel, macs.get(n.name, 0),
                                f"{mode} int8 via {kernel}: weights int8 per output channel, {act}{note}"))
        else:
            rows.append(OpEntry(n.name, n.group, n.kind, "float", kernel, macs.get(n.name, 0),
                                f"quantization requested but ORT executes {kernel} in float "
                                f"(weight dequantized; not counted as int8)"))
    seen: dict[tuple[str, str], int] = {}
    for node in model.graph.node:
        if node.op_type in WHY_FLOAT and node.op_type not in COMPUTE_OPS:
            scope = ".".join(p for p in node.name.strip("/").split("/")[:-1]) or "model"
            seen[(scope, node.op_type)] = seen.get((scope, node.op_type), 0) + 1
    for (scope, op), count in seen.items():
        if op in ("Add", "Mul"):
            continue  # folded into the summary row below
        rows.append(OpEntry(f"{scope}.{op}" + (f" x{count}" if count > 1 else ""), None, op, "float", op, 0,
                            WHY_FLOAT[op]))
    n_elem = sum(c for (_, op), c in seen.items() if op in ("Add", "Mul"))
    rows.append(OpEntry(f"element-wise Add/Mul x{n_elem}", None, "Add/Mul", "float", "Add/Mul", 0,
                        "residuals, biases, scaling: " + WHY_FLOAT["Add"]))
    return rows


def mac_summary(rows: list[OpEntry]) -> dict[str, float | int]:
    total = sum(r.macs for r in rows)
    int8 = sum(r.macs for r in rows if r.precision == "int8")
    return {"total_macs": total, "int8_macs": int8, "int8_mac_share": int8 / total if total else 0.0}


def group_macs(nodes: list[ComputeNode], macs: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in nodes:
        key = n.group or ("attention scores" if "attn" in n.name else "depthwise conv")
        out[key] = out.get(key, 0) + macs.get(n.name, 0)
    return out
