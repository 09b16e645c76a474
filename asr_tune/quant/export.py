"""Export the float Conformer-CTC acoustic model to an ONNX graph that int8 quantizers can see.

``torchaudio.models.Conformer`` hides work from quantizers: ``nn.MultiheadAttention`` keeps its
input projection as a raw ``in_proj_weight`` parameter, the convolution module's pointwise layers
are ``Conv1d(kernel_size=1)`` and BatchNorm follows the depthwise conv. ``ExportableConformerCTC``
recomputes *the same function* (checked against the torch model in ``export_onnx``) with explicit
ops, so every projection is a ``MatMul`` against a named weight initializer:

* every Linear, the fused attention q/k/v projection and the attention output projection,
  the pointwise ``Conv1d``s (as ``MatMul``), the subsampling output Linear and the CTC head
  are ``MatMul`` nodes named after their weight (``layers.0.attn.in_proj`` ...);
* BatchNorm (eval statistics) is folded into the depthwise conv: exact in float;
* the subsampling ``Conv2d``s and the depthwise ``Conv1d`` stay ``Conv`` nodes.

Log-mel features are computed in torch (float) outside the graph: the ONNX model maps
``feats (B, T, n_mels) float32, lengths (B,) int64`` to ``log_probs (B, T', vocab), out_lens (B,)``.

Usage::

    from asr_tune.quant.export import export_onnx
    info = export_onnx(module.model, "model.fp32.onnx", n_mels=40)
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from asr_tune.errors import QuantizationError

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAMES = ["feats", "lengths"]
OUTPUT_NAMES = ["log_probs", "out_lens"]


class _Lin(nn.Module):
    """``x @ weight + bias`` with ``weight`` stored ``(in, out)``: exports as one MatMul + Add."""

    def __init__(self, linear_weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(linear_weight.detach().t().contiguous().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x, self.weight)
        return y if self.bias is None else y + self.bias


def _copy_conv(src: nn.Conv2d) -> nn.Conv2d:
    out = nn.Conv2d(src.in_channels, src.out_channels, src.kernel_size, src.stride, src.padding,
                    groups=src.groups, bias=src.bias is not None)
    out.load_state_dict(src.state_dict())
    return out


def _ln(src: nn.LayerNorm) -> nn.LayerNorm:
    out = nn.LayerNorm(src.normalized_shape, eps=src.eps)
    out.load_state_dict(src.state_dict())
    return out


class _ConvAsMatMul(nn.Module):
    """A 3x3 stride-2 ``Conv2d`` (no padding) as strided slices + one MatMul, channels-last.

    ``(B, T, F, C_in)`` -> ``(B, T', F', C_out)``; the same MACs as the conv, but a MatMul against a
    constant weight, which every ORT int8 path (``DynamicQuantizeMatMul``, ``QLinearMatMul``) runs
    with the MLAS int8 GEMM (``ConvInteger`` on CPU is a slow reference kernel).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.kernel_size != (3, 3) or conv.stride != (2, 2) or conv.padding != (0, 0) or conv.groups != 1:
            raise QuantizationError(f"unsupported subsampling conv {conv}")
        w = conv.weight.detach()  # (C_out, C_in, kh, kw) -> rows ordered (kh, kw, C_in)
        self.weight = nn.Parameter(w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).contiguous(), requires_grad=False)
        self.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (x.shape[1] - 1) // 2
        f = (x.shape[2] - 1) // 2
        cols = [x[:, i: i + 2 * t - 1: 2, j: j + 2 * f - 1: 2, :] for i in range(3) for j in range(3)]
        y = torch.cat(cols, dim=-1)  # (B, T', F', 9 * C_in)
        return torch.matmul(y, self.weight) + self.bias


class _FFN(nn.Module):
    def __init__(self, src: nn.Module) -> None:
        super().__init__()
        seq = src.sequential
        self.norm, self.fc1, self.fc2 = _ln(seq[0]), _Lin(seq[1].weight, seq[1].bias), _Lin(seq[4].weight, seq[4].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.silu(self.fc1(self.norm(x))))


class _Attention(nn.Module):
    def __init__(self, norm: nn.LayerNorm, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        if not mha._qkv_same_embed_dim or mha.in_proj_weight is None or mha.bias_k is not None:
            raise QuantizationError("unsupported MultiheadAttention variant (separate q/k/v dims or bias_kv)")
        self.norm = _ln(norm)
        self.heads = mha.num_heads
        self.in_proj = _Lin(mha.in_proj_weight, mha.in_proj_bias)
        self.out_proj = _Lin(mha.out_proj.weight, mha.out_proj.bias)

    def forward(self, x: torch.Tensor, neg_mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.in_proj(self.norm(x)).chunk(3, dim=-1)
        q = q.reshape(b, t, h, d // h).transpose(1, 2) * (1.0 / math.sqrt(d // h))
        k = k.reshape(b, t, h, d // h).permute(0, 2, 3, 1)
        v = v.reshape(b, t, h, d // h).transpose(1, 2)
        scores = torch.matmul(q, k) + neg_mask  # (B, H, T, T); padded keys get -1e9
        ctx = torch.matmul(scores.softmax(-1), v)
        return self.out_proj(ctx.transpose(1, 2).reshape(b, t, d))


class _ConvModule(nn.Module):
    def __init__(self, src: nn.Module) -> None:
        super().__init__()
        seq = src.sequential
        pw1, dw, bn, pw2 = seq[0], seq[2], seq[3], seq[5]
        if not isinstance(bn, nn.BatchNorm1d):
            raise QuantizationError("unsupported conformer conv module (GroupNorm instead of BatchNorm)")
        self.norm = _ln(src.layer_norm)
        self.pw1 = _Lin(pw1.weight[:, :, 0], pw1.bias)
        self.pw2 = _Lin(pw2.weight[:, :, 0], pw2.bias)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # fold eval BatchNorm into the conv
        bias = dw.bias if dw.bias is not None else torch.zeros_like(bn.running_mean)
        self.dw = nn.Conv1d(dw.in_channels, dw.out_channels, dw.kernel_size[0], padding=dw.padding[0],
                            groups=dw.groups, bias=True)
        with torch.no_grad():
            self.dw.weight.copy_(dw.weight * scale[:, None, None])
            self.dw.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
        self.dw.requires_grad_(False)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        y = F.glu(self.pw1(self.norm(x)), dim=-1) * keep  # padded frames zeroed, as ConformerCTC does
        y = F.silu(self.dw(y.transpose(1, 2))).transpose(1, 2)
        return self.pw2(y)


class _Layer(nn.Module):
    def __init__(self, src: nn.Module) -> None:
        super().__init__()
        if src.convolution_first:
            raise QuantizationError("unsupported conformer layer (convolution_first=True)")
        self.ffn1, self.ffn2 = _FFN(src.ffn1), _FFN(src.ffn2)
        self.attn = _Attention(src.self_attn_layer_norm, src.self_attn)
        self.conv = _ConvModule(src.conv_module)
        self.final_norm = _ln(src.final_layer_norm)

    def forward(self, x: torch.Tensor, neg_mask: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ffn1(x)
        x = x + self.attn(x, neg_mask)
        x = x + self.conv(x, keep)
        x = x + 0.5 * self.ffn2(x)
        return self.final_norm(x)


class ExportableConformerCTC(nn.Module):
    """The float function of a trained ``ConformerCTC`` (eval mode) with quantizer-visible ops."""

    def __init__(self, model: nn.Module, subsampling_as_matmul: bool = False) -> None:
        super().__init__()
        self.as_matmul = subsampling_as_matmul
        try:
            sub = model.subsampling
            self.times = sub.times
            convs = [m for m in sub.conv if isinstance(m, nn.Conv2d)]
            self.convs = nn.ModuleList(_ConvAsMatMul(m) if subsampling_as_matmul else _copy_conv(m) for m in convs)
            self.sub_out = _Lin(sub.out.weight, sub.out.bias)
            self.layers = nn.ModuleList(_Layer(layer) for layer in model.encoder.conformer_layers)
            self.ctc_head = _Lin(model.ctc_head.weight, model.ctc_head.bias)
        except (AttributeError, IndexError, TypeError) as err:
            raise QuantizationError(f"not a ConformerCTC acoustic model this exporter supports ({err})") from None
        self.requires_grad_(False)
        self.eval()

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.as_matmul:
            y = feats.unsqueeze(-1)  # channels-last (B, T, F, 1)
            for conv in self.convs:
                y = F.relu(conv(y))
            b, t, f, c = y.shape
            x = self.sub_out(y.transpose(2, 3).reshape(b, t, c * f))
        else:
            y = feats.unsqueeze(1)  # (B, 1, T, F) as in ConvSubsampling
            for conv in self.convs:
                y = F.relu(conv(y))
            b, c, t, f = y.shape
            x = self.sub_out(y.transpose(1, 2).reshape(b, t, c * f))
        out_len = lengths
        for _ in range(self.times):
            out_len = torch.div(out_len - 1, 2, rounding_mode="floor")
        out_len = out_len.clamp(min=1).clamp(max=t)
        pad = torch.arange(t, device=feats.device)[None, :] >= out_len[:, None]
        neg_mask = (pad.to(x.dtype) * -1e9)[:, None, None, :]
        keep = (~pad).to(x.dtype)[:, :, None]  # (B, T, 1)
        for layer in self.layers:
            x = layer(x, neg_mask, keep)
        return self.ctc_head(x).log_softmax(-1), out_len


@dataclass
class ExportInfo:
    path: str
    bytes: int
    max_abs_diff: float  # |onnx fp32 - torch| on the check input (log-probs)


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give every MatMul/Conv node reading a parameter the parameter's module name (unique)."""
    inits = {i.name for i in model.graph.initializer}
    used: set[str] = set()
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Conv") and len(node.input) > 1 and node.input[1] in inits:
            base = node.input[1].removesuffix(".weight")
            name, k = base, 1
            while name in used:
                name, k = f"{base}_{k}", k + 1
            node.name = name
            used.add(name)
    for i, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{i}"


def export_onnx(model: nn.Module, path: str | Path, n_mels: int, subsampling_as_matmul: bool = False,
                check_frames: int = 97) -> ExportInfo:
    """Write the fp32 ONNX graph of ``model`` and verify it against torch on a random input.

    ``subsampling_as_matmul`` writes the subsampling convs as im2col + MatMul (same MACs): the
    form the dynamic int8 path uses, because ORT's ``ConvInteger`` CPU kernel is slow.
    """
    import onnxruntime as ort

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = ExportableConformerCTC(model, subsampling_as_matmul).eval()
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, check_frames, n_mels, generator=gen)
    lengths = torch.tensor([check_frames, check_frames * 2 // 3])
    with torch.no_grad():
        ref_lp, ref_len = model.eval()(feats, lengths)
        mine_lp, mine_len = wrapper(feats, lengths)
    if not torch.equal(ref_len, mine_len) or (ref_lp - mine_lp).abs().max() > 1e-3:
        raise QuantizationError("the exportable model does not reproduce the torch model "
                                f"(max |diff| {(ref_lp - mine_lp).abs().max():.2e})")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper, (feats, lengths), str(path), input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
            opset_version=OPSET, dynamo=False, do_constant_folding=True,
            dynamic_axes={"feats": {0: "batch", 1: "frames"}, "lengths": {0: "batch"},
                          "log_probs": {0: "batch", 1: "out_frames"}, "out_lens": {0: "batch"}})
    proto = onnx.load(str(path))
    _name_nodes(proto)
    onnx.save(proto, str(path))
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    lp, ol = sess.run(None, {"feats": feats.numpy(), "lengths": lengths.numpy()})
    diff = float((torch.from_numpy(lp) - ref_lp).abs().max())
    if diff > 1e-3 or not torch.equal(torch.from_numpy(ol), ref_len):
        raise QuantizationError(f"ONNX export does not reproduce the torch model (max |diff| {diff:.2e})")
    return ExportInfo(str(path), path.stat().st_size, diff)
